"""`tme agent` and `tme gateway`: the edge processes (placeholder until they land)."""

import typer

agent_app = typer.Typer()
gateway_app = typer.Typer()
