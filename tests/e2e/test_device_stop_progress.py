"""`tme device stop` of a pump whose write it cut off, over RabbitMQ and Mosquitto: the
agent writes the safe values at once, holds them until the cut-off write can no longer
land (the agents' answer time), then writes them again. The CLI says the first writes
and the hold as they happen, not only once the run ends; Ctrl-C leaves the stop going.

The machine is checked by reading the simulator directly, never through TME.
"""

from __future__ import annotations

import io
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import IO

import pytest
from waiting import wait_until

from tme.cli.main import app
from tme.cli.output import console
from tme.stack import LocalStack

pytestmark = pytest.mark.external_service

PUMP_UNIT, RUN_COIL, SPEED_SETPOINT = 1, 0, 0  # configs/profiles/pump.yaml
REGISTER_WRITES = {6, 16}  # Modbus function codes that write holding registers
SAFE_VALUES = "run = false, speed_setpoint = 0"  # as the CLI says them
SAID_WITHIN_S = 15.0  # a busy CI machine: the CLI reads the run every 0.2 s


def _safe_speed_writes(stack: LocalStack) -> int:
    """How many writes of the pump's safe speed (0) reached the plant."""
    return sum(
        1
        for r in list(stack.plant.requests)
        if r.unit == PUMP_UNIT
        and r.function_code in REGISTER_WRITES
        and r.address == SPEED_SETPOINT
        and r.values == (0,)
    )


class _Lines(io.TextIOBase):
    """Text written to it (or read from a stream by `follow`), line by line as it comes."""

    def __init__(self) -> None:
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._part = ""
        self.seen: list[str] = []

    def write(self, text: str) -> int:
        *lines, self._part = (self._part + text).split("\n")
        for line in lines:
            self._queue.put(line)
        return len(text)

    def follow(self, stream: IO[str]) -> None:
        def pump() -> None:
            for line in stream:
                self._queue.put(line.rstrip("\n"))
            self._queue.put(None)  # the end of its output

        threading.Thread(target=pump, daemon=True).start()

    def next_with(self, text: str, timeout: float = SAID_WITHIN_S) -> str:
        """The next line that holds `text`, waiting for it up to `timeout` seconds."""
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"{text!r} not said within {timeout} s; said: {self.seen}")
            if line is None:
                pytest.fail(f"the output ended without {text!r}; said: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


def _cut_off_write(stack: LocalStack, client) -> None:  # type: ignore[no-untyped-def]
    """A speed write the pump holds (no answer within `hold_s`) runs at its agent: a stop
    now cuts it off mid-request, and it may still land."""
    target = {"site": stack.config.site, "agent": "skid-a", "device": "pump1"}
    wait_until(
        lambda: any(d.name == "pump1" for d in client.fleet.devices(site=target["site"])),
        timeout=15,
        what="pump1 published",
    )
    stack.plant.write_bit(PUMP_UNIT, RUN_COIL, True)  # the pump runs
    stack.plant.inject_fault(unit=PUMP_UNIT, table="holding_register", delay_s=4, remaining=1)
    fast = {"point": "speed_setpoint", "value": 1800}
    slow = client.tasks.create(name="speed", op="modbus.write", target=target, params=fast)
    wait_until(lambda: client.runs.get(slow.latest_run_id).state == "running", timeout=15)


def _run_id(header: str) -> str:
    found = re.search(r"run ([0-9a-f-]{36})", header)
    assert found, header
    return found.group(1)


@pytest.fixture
def cli_lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Lines]:
    """What the CLI prints, in this process, line by line as it prints it."""
    lines = _Lines()
    monkeypatch.setattr(console, "_file", lines)  # restored to None: sys.stdout at each print
    monkeypatch.setattr(console, "width", 300)
    yield lines


def test_the_cli_says_the_safe_values_are_written_before_the_agent_writes_them_again(
    steady_stack, client_of, cli_lines, monkeypatch
) -> None:
    """The pump holds the write 4 s, the agents wait 5: the stop holds the safe values
    about 5 s. The CLI says they were written while the stop's run still holds them,
    with the safe speed written once; it ends with the run, the speed written twice."""
    stack = steady_stack
    client = client_of(stack)
    _cut_off_write(stack, client)
    monkeypatch.setenv("TME_TOKEN", stack.token)
    exit_codes: list[object] = []
    args = ["device", "stop", "pump1", "--reason", "leak at the seal", "--url", stack.url]
    cli = threading.Thread(target=lambda: exit_codes.append(app(args, standalone_mode=False)))
    cli.start()
    try:
        run_id = _run_id(cli_lines.next_with("stop of pump1: task "))
        written = cli_lines.next_with("safe values written at ")
        # said while the agent holds them: its run goes on, the safe speed written once
        assert client.runs.get(run_id).state == "running"
        assert _safe_speed_writes(stack) == 1
        assert written.endswith(f": {SAFE_VALUES}"), written
        # the run's log says the same while it goes on (what its dashboard page shows)
        logged = [line.line for line in client.runs.get(run_id).log]
        assert written in logged, logged
        holding = cli_lines.next_with("holding them ")
        assert re.search(r"holding them \d+\.\d s, until \d\d:\d\d:\d\d\.\d{3} UTC", holding)
        assert "its agent writes them again then" in holding
        end = cli_lines.next_with("the agent: ")
        assert end == f"the agent: succeeded: wrote {SAFE_VALUES} (its safe values)", end
    finally:
        cli.join(timeout=60)
    assert exit_codes == [None] or exit_codes == [0], exit_codes
    assert _safe_speed_writes(stack) == 2
    assert stack.plant.read_register(PUMP_UNIT, SPEED_SETPOINT) == 0
    first = client.runs.get(run_id).result["first_pass"]  # as the SDK and the API give it
    assert (first["written"], first["not_written"]) == ({"run": False, "speed_setpoint": 0}, {})
    assert 0 < first["hold_s"] <= 5


def test_ctrl_c_while_the_stop_holds_the_safe_values_leaves_the_stop_going(
    patient_stack, client_of
) -> None:
    """The agents wait 30 s: the stop holds the safe values about 30 s. Ctrl-C then ends
    `tme device stop` (exit 130) saying how to follow the stop, which goes on at its
    agent."""
    stack = patient_stack
    client = client_of(stack)
    _cut_off_write(stack, client)
    env = {**os.environ, "TME_TOKEN": stack.token, "COLUMNS": "300"}
    args = ["device", "stop", "pump1", "--reason", "seal", "--url", stack.url]
    process = subprocess.Popen(
        [sys.executable, "-m", "tme.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = _Lines()
    try:
        assert process.stdout is not None
        lines.follow(process.stdout)
        run_id = _run_id(lines.next_with("stop of pump1: task ", timeout=60))
        lines.next_with("safe values written at ")
        assert "holding them " in lines.next_with("holding them ")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 130
        assert process.stderr is not None
        said = " ".join(process.stderr.read().split())
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    follow = f"follow its run with `tme run show {run_id}`"
    assert f"the stop of pump1 goes on at its agent; {follow}" in said, said
    assert client.runs.get(run_id).state == "running"  # still holding the safe values
    assert _safe_speed_writes(stack) == 1
