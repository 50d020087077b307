"""`tme controller` and `tme demo` (placeholder)."""

import typer


def register(app: typer.Typer) -> None:
    pass
