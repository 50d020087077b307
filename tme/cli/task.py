"""`tme task ...` (placeholder until the SDK lands)."""

import typer

app = typer.Typer(no_args_is_help=True)
