"""`tme db upgrade|current`: apply and inspect the database schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.engine import Engine

from tme.cli.output import console

app = typer.Typer(no_args_is_help=True)

UrlOption = Annotated[
    str | None, typer.Option("--url", help="Database URL (default: database.url setting).")
]


def _engine(url: str | None) -> Engine:
    from tme.config import load_settings
    from tme.controller.store.db import make_engine

    return make_engine(url or load_settings().database.url)


@app.command("upgrade")
def upgrade(url: UrlOption = None) -> None:
    """Apply every migration the database is missing (safe to run again)."""
    from tme.controller.store.db import current_revision, head_revision
    from tme.controller.store.db import upgrade as do_upgrade

    engine = _engine(url)
    before = current_revision(engine)
    do_upgrade(engine)
    after = head_revision()
    if before == after:
        console.print(f"database schema already at {after}")
    else:
        console.print(f"database schema upgraded from {before or 'empty'} to {after}")
    engine.dispose()


@app.command("current")
def current(url: UrlOption = None) -> None:
    """Print the schema revision of the database and the one this TME needs."""
    from tme.controller.store.db import current_revision, head_revision

    engine = _engine(url)
    console.print(f"database: {current_revision(engine) or 'empty'}; needed: {head_revision()}")
    engine.dispose()
