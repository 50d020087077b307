"""`tme sim modbus|serial`: simulated machines (placeholder until the simulators land)."""

import typer

app = typer.Typer(no_args_is_help=True)
