"""`tme sim modbus|serial`: run a simulated machine until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import typer

from tme.cli.output import console

app = typer.Typer(no_args_is_help=True)


# What each --fault field takes: a whole number within bounds (unit ids and exception
# codes are one byte on the wire, an address two), seconds, a table, or a flag.
WHOLE_FIELDS = {
    "unit": (0, 255),
    "address": (0, 65535),
    "exception": (1, 255),
    "remaining": (1, None),
}
FLAGS = {"1": True, "true": True, "yes": True, "": True, "0": False, "false": False, "no": False}


def _parse_fault(text: str) -> dict[str, Any]:
    """ "unit=1,table=holding_register,address=0,exception=2" -> Fault fields; a field
    the simulator could not apply as written is a usage error naming it (one line)."""
    from tme.cli.common import usage_error

    fields: dict[str, Any] = {}
    for part in filter(None, text.split(",")):
        key, _, value = part.partition("=")
        key, value = key.strip(), value.strip()
        try:
            fields[key] = _fault_field(key, value)
        except ValueError as exc:
            usage_error(f"--fault {text!r}: {exc}")
    return fields


def _fault_field(key: str, value: str) -> Any:
    from tme.simulators.faults import FUNCTION_TABLES

    if key in WHOLE_FIELDS:
        try:
            number = int(value)
        except ValueError:
            raise ValueError(f"{key} must be a whole number, got {value!r}") from None
        low, high = WHOLE_FIELDS[key]
        if number < low or (high is not None and number > high):
            bounds = f"from {low} to {high}" if high is not None else f"from {low}"
            raise ValueError(f"{key} must be {bounds}, got {number}")
        return number
    if key == "delay_s":
        try:
            seconds = float(value)
        except ValueError:
            raise ValueError(f"delay_s must be a number of seconds, got {value!r}") from None
        if not 0 <= seconds < float("inf"):
            raise ValueError(f"delay_s must be from 0 seconds, got {value}")
        return seconds
    if key == "drop":
        if value.lower() not in FLAGS:
            raise ValueError(f"drop must be true or false, got {value!r}")
        return FLAGS[value.lower()]
    if key == "table":
        tables = sorted(set(FUNCTION_TABLES.values()), key=list(FUNCTION_TABLES.values()).index)
        if value not in tables:
            raise ValueError(f"table {value!r} is not one of {', '.join(tables)}")
        return value
    raise ValueError(
        f"unknown fault field {key!r} (fields: unit, table, address, exception, delay_s, "
        "drop, remaining)"
    )


def _check_listen(host: str, port: int) -> None:
    """A port in use (or an address this machine does not have) is one line naming it,
    not the simulator's traceback ("Could not start listen, please check address.")."""
    import socket

    from tme.cli.output import fail
    from tme.stack import listen_hint

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port} ({exc.strerror or exc}): {listen_hint(exc)}")


async def _serve(sim: Any, describe: str, link: str = "") -> None:
    """Serve until interrupted. A link that cannot be served (the TCP port was checked
    before) is one line naming it and what was said, not pymodbus's traceback ("Could
    not start listen, please check address.", "protocol 'bogus' not known")."""
    from tme.cli.output import fail

    try:
        await sim.start()
    except (OSError, RuntimeError, ValueError) as exc:
        await sim.stop()
        fail(f"cannot serve {link or 'the simulator'}: {exc}")
    console.print(describe.format(sim=sim))
    try:
        await asyncio.Event().wait()  # serve until interrupted
    finally:
        await sim.stop()


@app.command()
def modbus(
    host: str = typer.Option("127.0.0.1", help="Interface for Modbus TCP."),
    port: int = typer.Option(5020, min=0, max=65535, help="Modbus TCP port (0 = any free port)."),
    rtu: str = typer.Option("", help="Also serve RTU on this URL, e.g. socket://127.0.0.1:5021."),
    pty: bool = typer.Option(False, "--pty", help="Also serve RTU on a pty pair; prints the path."),
    tick_s: float = typer.Option(0.1, help="Physics time step in seconds (0 = frozen plant)."),
    fault: list[str] = typer.Option(
        [], help="Fault, e.g. unit=1,table=holding_register,address=0,exception=2 or delay_s=5."
    ),
) -> None:
    """Serve the plant: pump (unit 1), tank (unit 2), conveyor (unit 3)."""
    from tme.simulators.modbus_plant import PlantSimulator

    _check_listen(host, port)
    sim = PlantSimulator(host, port, rtu="pty" if pty else (rtu or None), tick_s=tick_s or None)
    for text in fault:
        sim.inject_fault(**_parse_fault(text))
    describe = "plant: Modbus TCP on {sim.host}:{sim.port}" + (
        " RTU on {sim.rtu_url}" if sim.rtu else ""
    )
    link = f"RTU on {sim.rtu!r} (--rtu)" if rtu and not pty else ""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, describe, link))


@app.command()
def serial(
    host: str = typer.Option("127.0.0.1", help="Interface for the TCP listener."),
    port: int = typer.Option(
        7000, min=0, max=65535, help="TCP port; drivers connect to socket://HOST:PORT."
    ),
    pty: bool = typer.Option(False, "--pty", help="Serve on a pty instead; prints its path."),
) -> None:
    """Serve the SCPI-like power supply (see configs/profiles/instrument.yaml)."""
    from tme.simulators.instrument import SerialInstrument

    if not pty:
        _check_listen(host, port)
    sim = SerialInstrument(host, port, pty=pty)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(sim, "instrument: {sim.url}"))
