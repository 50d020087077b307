"""`tme mqtt acl --site S`: Mosquitto password and ACL files for one site."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tme.cli.access import DbOption, database
from tme.cli.output import console, fail

app = typer.Typer(no_args_is_help=True)


@app.callback()
def mqtt() -> None:
    """MQTT broker files for a site (keeps `acl` a subcommand)."""


def _agents_of(site: str, db: str | None) -> list[str]:
    from sqlmodel import select

    from tme.controller.store.models import Agent

    with database(db) as (_engine, session):
        rows = session.exec(select(Agent).where(Agent.site == site, Agent.role == "agent"))
        return sorted(a.name for a in rows)


@app.command("acl")
def acl(
    site: Annotated[str, typer.Option("--site", help="The site the broker serves.")],
    agents: Annotated[
        str | None,
        typer.Option("--agents", help="Comma-separated agent names (default: the database's)."),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path("mosquitto"),
    db: DbOption = None,
) -> None:
    """Write passwd, acl, mosquitto.conf and credentials (agent passwords) into --out."""
    from tme.mqtt_acl import write_site_files

    names = [a.strip() for a in agents.split(",") if a.strip()] if agents else _agents_of(site, db)
    if not names:
        fail(f"no agents for site {site!r}: pass --agents or let them report presence first")
    accounts = write_site_files(site, names, out)
    console.print(
        f"wrote {out}/passwd, acl, mosquitto.conf and credentials for "
        f"{len(accounts)} accounts ({', '.join(a.username for a in accounts)}); "
        "give each agent its line of credentials and keep the file secret",
        highlight=False,
    )
