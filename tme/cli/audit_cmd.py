"""`tme audit verify`: check the audit log's keyed chain for edited or removed rows (it
needs the controller's audit key, `auth.audit_key`, e.g. TME_AUTH__AUDIT_KEY);
`tme audit tail`: the newest rows.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from tme.cli.access import DbOption, database
from tme.cli.common import JsonOption
from tme.cli.output import console, fail, print_json

app = typer.Typer(no_args_is_help=True)


@app.command("verify")
def verify(db: DbOption = None) -> None:
    """Exit 1 and name each broken row when a row was edited or removed."""
    from tme.config import load_settings
    from tme.controller.services.audit import audit_key, verify_chain
    from tme.controller.store.security_models import AuditHead

    with database(db) as (_engine, session):
        count, problems = verify_chain(session, audit_key(load_settings()))
        head = session.get(AuditHead, 1)
        newest = head.last_id if head is not None else 0
    if problems:
        for problem in problems[:50]:
            console.print(escape(f"row {problem.entry_id}: {problem.problem}"), highlight=False)
        fail(f"audit log tampered: {len(problems)} problem(s) in {count} rows")
    console.print(f"audit log intact: {count} rows, chain verified to row {newest}")


@app.command("tail")
def tail(
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1000, help="How many rows, newest first.")
    ] = 20,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the newest rows, the newest last.

    With --json, a list of them in the same order, each with the fields GET /api/v1/audit
    answers (its details and hashes too)."""
    from tme.controller.services.audit import AuditEntryPublic, AuditFilters, query

    with database(db) as (_engine, session):
        rows = query(session, AuditFilters(), limit=limit)
        entries = [AuditEntryPublic.model_validate(row) for row in reversed(rows)]
    if as_json:
        print_json([entry.model_dump(mode="json") for entry in entries])
        return
    for row in entries:  # a failed login's name is anyone's text: never markup
        line = (
            f"{row.id} {row.at:%Y-%m-%d %H:%M:%S} {row.actor or '-'} {row.action} "
            f"{row.target} {row.outcome} {row.client}"
        )
        console.print(escape(line), highlight=False, soft_wrap=True)
