"""`tme config show`: the effective value of every setting and where it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tme.cli.output import print_json, print_table
from tme.config import effective_items, load_settings

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    config_dir: Annotated[
        Path | None,
        typer.Option("--config-dir", help="Folder with default.yaml and override.yaml."),
    ] = None,
) -> None:
    """Print every setting (secrets masked) with its source: default, file or variable."""
    # A ConfigError propagates: the `tme` entry point prints it as one line and exits 1.
    items = effective_items(load_settings(config_dir=config_dir))
    if as_json:
        print_json([{"key": k, "value": v, "source": s} for k, v, s in items])
    else:
        print_table("TME configuration", ["key", "value", "source"], items, whole=["key"])
