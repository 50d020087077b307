"""`tme sim modbus|serial`: run a simulated machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import typer

from tme.cli.output import console

app = typer.Typer(no_args_is_help=True)


def _parse_fault(text: str) -> dict[str, Any]:
    """ "unit=1,table=holding_register,address=0,exception=2" -> Fault fields."""
    fields: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        key = key.strip()
        if key in {"unit", "address", "exception", "remaining"}:
            fields[key] = int(value)
        elif key == "delay_s":
            fields[key] = float(value)
        elif key == "drop":
            fields[key] = value.strip().lower() in {"1", "true", "yes", ""}
        elif key == "table":
            fields[key] = value.strip()
        else:
            raise typer.BadParameter(f"unknown fault field {key!r}", param_hint="--fault")
    return fields


async def _serve(sim: Any, describe: str) -> None:
    await sim.start()
    console.print(describe.format(sim=sim))
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        await sim.stop()


@app.command()
def modbus(
    host: str = typer.Option("127.0.0.1", help="Interface for Modbus TCP."),
    port: int = typer.Option(5020, help="Modbus TCP port (0 = any free port)."),
    rtu: str = typer.Option("", help="Also serve RTU on this URL, e.g. socket://127.0.0.1:5021."),
    pty: bool = typer.Option(False, "--pty", help="Also serve RTU on a pty pair; prints the path."),
    tick_s: float = typer.Option(0.1, help="Physics time step in seconds (0 = frozen plant)."),
    fault: list[str] = typer.Option(
        [], help="Fault, e.g. unit=1,table=holding_register,address=0,exception=2 or delay_s=5."
    ),
) -> None:
    """Serve the plant: pump (unit 1), tank (unit 2), conveyor (unit 3)."""
    from tme.simulators.modbus_plant import PlantSimulator

    sim = PlantSimulator(host, port, rtu="pty" if pty else (rtu or None), tick_s=tick_s or None)
    for text in fault:
        sim.inject_fault(**_parse_fault(text))
    describe = "plant: Modbus TCP on {sim.host}:{sim.port}" + (
        " RTU on {sim.rtu_url}" if sim.rtu else ""
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, describe))


@app.command()
def serial(
    host: str = typer.Option("127.0.0.1", help="Interface for the TCP listener."),
    port: int = typer.Option(7000, help="TCP port; drivers connect to socket://HOST:PORT."),
    pty: bool = typer.Option(False, "--pty", help="Serve on a pty instead; prints its path."),
) -> None:
    """Serve the SCPI-like power supply (see configs/profiles/instrument.yaml)."""
    from tme.simulators.instrument import SerialInstrument

    sim = SerialInstrument(host, port, pty=pty)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, "instrument: {sim.url}"))
