"""Following a stop's run for `tme device stop`: what its agent's first writes did, at
once, then the hold before it writes the safe values again, then how the run ended.

The agent writes a device's safe values at once; when the stop cut off a write that may
still land, it holds them the device's answer time and writes them again. Its run's
`result.first_pass` says the first writes as soon as they are done (docs/api.md,
"Stopping a device"), so an operator learns the device is safe without waiting for that
hold. An agent that predates `first_pass` is followed to the run's end, as before.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from tme.cli.output import console, err_console
from tme.client.base import is_final
from tme.first_pass_text import first_pass_lines, first_pass_of, not_written, values_text
from tme.schemas import RunDetail, RunPublic

if TYPE_CHECKING:  # the SDK loads only for commands that use it
    from tme.client import Client

POLL_S = 0.2  # how often the run is read: a first write is said within this of its arrival
ROUND_RUNS = 10  # a site's stops: up to this many are read every POLL_S, more less often
INTERRUPTED_EXIT = 130  # as a shell says a command ended by Ctrl-C


@dataclass(frozen=True)
class Stop:
    """The stop's task and its run, as the API answered."""

    task_id: int
    run_id: str


def follow_stop(
    client: Client, name: str, stop: Stop, wait: bool, timeout: float, quiet: bool
) -> RunDetail:
    """The stop's run once its first writes are said (`wait`: once it ended; a first
    write that failed: at once), each step printed as it comes unless `quiet` (--json).
    Ctrl-C leaves the stop going on at its agent, saying how to follow it."""
    try:
        return _follow(client, stop, wait, timeout, quiet)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the stop of {escape(name)} goes on at its agent; follow its run"
            f" with `tme run show {stop.run_id}`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT) from None


def stop_failed(run: RunPublic) -> bool:
    """Whether `tme device stop` exits non-zero: a safe value its agent could not write
    (at once, whatever the writes after the hold then do), or a run that ended otherwise
    than succeeded."""
    first = first_pass(run)
    if first is not None and not_written(first):
        return True
    return is_final(run.state) and run.state != "succeeded"


def _follow(client: Client, stop: Stop, wait: bool, timeout: float, quiet: bool) -> RunDetail:
    deadline = time.monotonic() + timeout
    run = _poll(client, stop.run_id, deadline)
    first = first_pass(run)
    leaving = is_final(run.state) or stop_failed(run) or (first is not None and not wait)
    if first is not None and not quiet:
        _print_first_pass(first, stop.run_id, is_final(run.state), leaving)
    if leaving:
        return run
    try:
        client.tasks.wait(stop.task_id, timeout=max(deadline - time.monotonic(), 0.0))
    except TimeoutError:
        raise TimeoutError(_still_going(stop.run_id, "running")) from None
    return client.runs.get(stop.run_id)


def _poll(client: Client, run_id: str, deadline: float) -> RunDetail:
    """Read the run until its first writes are said or it ended; TimeoutError past the
    deadline."""
    while True:
        run = client.runs.get(run_id)
        if first_pass(run) is not None or is_final(run.state):
            return run
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(_still_going(run_id, run.state))
        time.sleep(min(POLL_S, left))  # the polling interval of a deadline wait


def _still_going(run_id: str, state: str) -> str:
    return (
        f"the stop's run {run_id} is still {state} at the --timeout: it goes on at its"
        f" agent; follow it with `tme run show {run_id}`"
    )


def first_pass(run: RunPublic) -> dict[str, Any] | None:
    """What the stop's first writes did, as its agent said (None: not said yet, or an
    agent that does not say it)."""
    return first_pass_of(run.result)


def _print_first_pass(first: dict[str, Any], run_id: str, ended: bool, leaving: bool) -> None:
    """The first writes, and the hold when the run goes on (`leaving`: without waiting
    for its end, so how to follow it)."""
    lines = first_pass_lines(first, ended)
    for line in lines:
        _say(line)
    if len(lines) > 1 and leaving:  # a hold is said: the run goes on past this
        _say(f"not waiting for that: follow the stop with `tme run show {run_id}`")


def follow_site_stop(
    client: Client,
    site: str,
    stops: list[tuple[str, Stop]],
    wait: bool,
    timeout: float,
    quiet: bool,
) -> dict[str, RunDetail]:
    """The stops of a site's devices, followed together (`stops`: each device's label and
    stop): each device's first writes said as they come, prefixed by its label, and each
    run's end; it ends once every stop said its first writes (or ended), with `wait` once
    every run ended. Returns the last read of each run, by label. Ctrl-C leaves the stops
    going on at their agents, as for one device."""
    try:
        return _follow_all(client, stops, wait, timeout, quiet)
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted: the stops of site {escape(site)} go on at their agents; follow"
            " each with `tme run show <run>`",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(INTERRUPTED_EXIT) from None


def _follow_all(
    client: Client, stops: list[tuple[str, Stop]], wait: bool, timeout: float, quiet: bool
) -> dict[str, RunDetail]:
    deadline = time.monotonic() + timeout
    runs: dict[str, RunDetail] = {}
    said: set[str] = set()  # labels whose first writes were printed
    ended: set[str] = set()
    while True:
        for label, stop in stops:
            if label in ended:
                continue
            run = runs[label] = client.runs.get(stop.run_id)
            first = first_pass(run)
            if first is not None and label not in said:
                said.add(label)
                if not quiet:
                    for line in first_pass_lines(first, is_final(run.state)):
                        _say(f"{label}: {line}")
            if is_final(run.state):
                ended.add(label)
                if not quiet:
                    _say(f"{label}: the agent: {run.state}: {answer_text(run)}")
        going = [(label, stop) for label, stop in stops if label not in ended]
        if not [label for label, _ in going if wait or label not in said]:
            return runs
        left = deadline - time.monotonic()
        if left <= 0:
            still = ", ".join(f"{label} (run {stop.run_id})" for label, stop in going)
            raise TimeoutError(
                f"stops still going at the --timeout: {still}; they go on at their agents:"
                " follow each with `tme run show <run>`"
            )
        time.sleep(min(_round_pause(len(going)), left))  # the polling interval of a deadline wait


def _round_pause(going: int) -> float:
    """Seconds between two rounds of reads of the stops still going: POLL_S up to
    ROUND_RUNS of them, longer beyond, so that a large site's stops do not read the
    controller's API hundreds of times a second while it sends them."""
    return POLL_S * max(1.0, going / ROUND_RUNS)


def answer_text(run: RunPublic) -> str:
    """What the agent answered a stop or a resume, in words: what a stop wrote, whose
    stop a resume lifted, or the reason it gave."""
    result = run.result or {}
    written = result.get("written")
    if run.state == "succeeded" and isinstance(written, dict):
        return f"wrote {values_text(written)} (its safe values)"
    was = result.get("was")
    if run.state == "succeeded" and isinstance(was, dict):
        return f"{run.reason} (stopped by {was.get('by')} at {was.get('at')}: {was.get('reason')})"
    return run.reason or json.dumps(result)


def _say(text: str) -> None:
    console.print(escape(text), highlight=False, soft_wrap=True)  # one line each, whole
