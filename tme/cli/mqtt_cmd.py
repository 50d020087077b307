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


def _split(names: str) -> list[str]:
    return [n.strip() for n in names.split(",") if n.strip()]


@app.command("acl")
def acl(
    site: Annotated[str, typer.Option("--site", help="The site the broker serves.")],
    agents: Annotated[
        str | None,
        typer.Option("--agents", help="Comma-separated agent names (default: the database's)."),
    ] = None,
    gateways: Annotated[
        str,
        typer.Option(
            "--gateways",
            help="Comma-separated gateway names (each `tme gateway --name`), one account each.",
        ),
    ] = "gateway",
    listeners: Annotated[
        list[str] | None,
        typer.Option(
            "--listener",
            help="A broker listener, 'PORT [ADDRESS]' (repeatable; default: 1883 127.0.0.1).",
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the files.")] = Path("mosquitto"),
    db: DbOption = None,
) -> None:
    """Write passwd, acl, mosquitto.conf and credentials (one password per account) into --out."""
    from tme.errors import ConfigError
    from tme.mqtt_acl import DEFAULT_LISTENER, write_site_files

    names = _split(agents) if agents else _agents_of(site, db)
    if not names:
        fail(f"no agents for site {site!r}: pass --agents or let them report presence first")
    try:
        accounts = write_site_files(
            site, names, out, _split(gateways), listeners or [DEFAULT_LISTENER]
        )
    except ConfigError as exc:
        fail(exc.message)
    console.print(
        f"wrote {out}/passwd, acl, mosquitto.conf and credentials for "
        f"{len(accounts)} accounts ({', '.join(a.username for a in accounts)}); "
        "give each agent and gateway its own line of credentials and keep the file secret",
        highlight=False,
    )
