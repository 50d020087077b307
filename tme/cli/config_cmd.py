"""`tme config ...` (placeholder until the configuration module lands)."""

import typer

app = typer.Typer(no_args_is_help=True)
