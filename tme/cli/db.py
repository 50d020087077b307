"""`tme db upgrade|current|prune`: apply and inspect the schema migrations, and delete
what is older than the retention period."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated

import typer

from tme.cli.common import cli_errors, database_errors, usage_error
from tme.cli.output import console

app = typer.Typer(no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Database URL (default: database.url setting).")
]


def _database_url(url: str | None) -> str:
    from tme.config import load_settings

    with cli_errors():
        return url or load_settings().database.url


@app.command("upgrade")
def upgrade(url: UrlOption = None) -> None:
    """Apply every migration the database is missing (safe to run again)."""
    from tme.controller.store.db import current_revision, head_revision, make_engine
    from tme.controller.store.db import upgrade as do_upgrade

    url = _database_url(url)
    with cli_errors(), database_errors(url):  # cli_errors: a schema newer than this TME
        engine = make_engine(url)
        try:
            before = current_revision(engine)
            do_upgrade(engine)
        finally:
            engine.dispose()
    after = head_revision()
    if before == after:
        console.print(f"database schema already at {after}")
    else:
        console.print(f"database schema upgraded from {before or 'empty'} to {after}")


@app.command("current")
def current(url: UrlOption = None) -> None:
    """Print the schema revision of the database and the one this TME needs."""
    from tme.cli.access import missing_sqlite_file
    from tme.controller.store.db import current_revision, head_revision, make_engine

    url = _database_url(url)
    missing = missing_sqlite_file(url)
    if missing is not None:  # it only reads: SQLite would make the file, and its folders
        console.print(
            f"database: empty (no file at {missing} yet: tme db upgrade makes it);"
            f" needed: {head_revision()}",
            highlight=False,
            markup=False,
        )
        return
    with database_errors(url):
        engine = make_engine(url)
        try:
            revision = current_revision(engine)
        finally:
            engine.dispose()
    console.print(f"database: {revision or 'empty'}; needed: {head_revision()}")


DURATION = re.compile(r"(\d+)\s*([smhdw])")
UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_DURATION = timedelta(days=36500)  # keeps the cutoff a date the databases hold


def parse_duration(text: str) -> timedelta:
    """A duration such as 90d, 12h, 30m, 45s or 2w; ValueError for anything else."""
    found = DURATION.fullmatch(text.strip().lower())
    if found is None or int(found.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 90d, 12h, 30m or 2w (more than 0)")
    try:
        duration = timedelta(**{UNITS[found.group(2)]: int(found.group(1))})
    except OverflowError:
        duration = MAX_DURATION * 2
    if duration > MAX_DURATION:
        raise ValueError(f"{text!r} is longer than {MAX_DURATION.days} days")
    return duration


@app.command("prune")
def prune(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Keep what is younger than this: 90d, 12h, 2w.")
    ],
    url: UrlOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete finished runs (with their events and logs), published outbox rows, schedule
    slots, idempotency keys, ended dashboard sessions and sent notifications older than
    --older-than. The audit log is never pruned. Safe to run while the controller runs."""
    from tme.controller.store.db import check_schema, make_engine
    from tme.controller.store.prune import prune as do_prune

    try:
        keep = parse_duration(older_than)
    except ValueError as exc:
        usage_error(f"--older-than: {exc}")
    url = _database_url(url)
    with cli_errors(), database_errors(url):
        engine = make_engine(url)
        try:
            check_schema(engine)
            counts = do_prune(engine, keep, dry_run=dry_run)
        finally:
            engine.dispose()
    verb = "would delete" if dry_run else "deleted"
    for table, rows in counts.items():
        console.print(f"{table}: {verb} {rows}")
