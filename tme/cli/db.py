"""`tme db upgrade|current`: apply and inspect the database schema migrations."""

from __future__ import annotations

from typing import Annotated

import typer

from tme.cli.common import cli_errors, database_errors
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
    with database_errors(url):
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
    from tme.controller.store.db import current_revision, head_revision, make_engine

    url = _database_url(url)
    with database_errors(url):
        engine = make_engine(url)
        try:
            revision = current_revision(engine)
        finally:
            engine.dispose()
    console.print(f"database: {revision or 'empty'}; needed: {head_revision()}")
