"""`tme rollout preview|create|list|show|cancel`: one device op run on many matching
devices, a few at a time, stopping when too many fail (docs/rollouts.md)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from tme.cli.common import JsonOption, TokenOption, UrlOption, connect, extra_options, option
from tme.cli.output import console, err_console, print_json, print_table
from tme.cli.task_input import load_bodies, params_given
from tme.client.calls import MAX_PAGE_SIZE
from tme.rollout_schemas import MatchedDevice, RolloutPublic
from tme.states import FINAL_STATES, SUCCESS_STATES

app = typer.Typer(no_args_is_help=True)
ENDED_OTHERWISE = {s.value for s in FINAL_STATES - SUCCESS_STATES}


def _opt(flag: str, help: str, kind: Any = str) -> Any:
    return Annotated[kind | None, typer.Option(flag, help=help, show_default=False)]


ROLLOUT_OPTIONS = [
    option("name", _opt("--name", "Rollout name (its tasks are named NAME: DEVICE).")),
    option("op", _opt("--op", "modbus.read, modbus.write, serial.command, device.stop, ...")),
    option("site", _opt("--site", "The site whose devices it matches (required).")),
    option("agent", _opt("--agent", "Only this agent's devices.")),
    option("profile", _opt("--profile", "Only devices of this profile (pump).")),
    option(
        "device",
        _opt("--device", "A device name or pattern (pump*, meter[12]), repeatable.", list[str]),
    ),
    option(
        "param",
        _opt(
            "--param", "key=value, repeatable; values are YAML: 5, true, [1, 2], text.", list[str]
        ),
    ),
    option("window", _opt("--window", "Runs at once: a number, or a share like 25% (default 1).")),
    option(
        "abort_percent",
        _opt(
            "--abort-percent",
            "Abort once this % of settled runs did not succeed (default 20).",
            float,
        ),
    ),
    option(
        "abort_min",
        _opt("--abort-min", "Judge --abort-percent once this many runs settled (default 2).", int),
    ),
    option("timeout", _opt("--timeout", "Each run's timeout in seconds.", float)),
    option("retries", _opt("--retries", "Retries after a failed run, per device.", int)),
    option(
        "priority",
        _opt("--priority", "0-9 (default 5): what waits goes higher priority first.", int),
    ),
    option(
        "file",
        _opt("--file", "A rollout body (YAML or JSON); the options override its fields.", Path),
    ),
]


def _body(opts: dict[str, Any]) -> dict[str, Any]:
    """The rollout body: the --file's, with what the options give over it."""
    body: dict[str, Any] = {}
    if opts.get("file") is not None:
        bodies, many = load_bodies(opts["file"])
        if many:
            from tme.cli.common import usage_error

            usage_error(f"--file {opts['file']}: one rollout, a mapping of its fields")
        body = bodies[0]
    for key in ("name", "op"):
        if opts.get(key) is not None:
            body[key] = opts[key]
    match = dict(body.get("match") or {})
    for key in ("site", "agent", "profile"):
        if opts.get(key) is not None:
            match[key] = opts[key]
    if opts.get("device"):
        match["devices"] = list(opts["device"])
    if match:
        body["match"] = match
    params = params_given(opts.get("param") or [], body.get("params"))
    if params is not None:
        body["params"] = params
    if opts.get("window") is not None:
        window = str(opts["window"])
        body["window"] = int(window) if window.isdecimal() else window
    abort = dict(body.get("abort") or {})
    if opts.get("abort_percent") is not None:
        abort["failed_percent"] = opts["abort_percent"]
    if opts.get("abort_min") is not None:
        abort["min_settled"] = opts["abort_min"]
    if abort:
        body["abort"] = abort
    if opts.get("timeout") is not None:
        body["timeout_s"] = opts["timeout"]
    if opts.get("retries") is not None:
        body["retries"] = {**(body.get("retries") or {}), "max": opts["retries"]}
    if opts.get("priority") is not None:
        body["priority"] = opts["priority"]
    return body


def _checked(devices: Sequence[MatchedDevice]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for d in devices:
        said = f"refused: {d.refused}" if d.refused else "; ".join(d.warnings) or "ok"
        rows.append((d.device, d.agent, d.profile, said))
    return rows


@app.command("preview")
@extra_options(ROLLOUT_OPTIONS, into="fields")
def preview(
    fields: dict[str, Any],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the devices a rollout would run on, in the order their runs start, and what
    the controller's checks say of the op on each (refused, or warnings such as locked
    out, stopped, not answering). Stores nothing."""
    with connect(url, token) as client:
        plan = client.rollouts.preview(**_body(fields))
    if as_json:
        print_json(plan.model_dump(mode="json"))
        return
    rows = _checked([*plan.devices, *plan.refused])
    print_table("Matched devices", ["device", "agent", "profile", "check"], rows, ["device"])
    console.print(
        f"{len(plan.devices)} to run, {plan.window} at a time; {len(plan.refused)} refused",
        highlight=False,
    )


@app.command("create")
@extra_options(ROLLOUT_OPTIONS, into="fields")
def create(
    fields: dict[str, Any],
    skip_refused: Annotated[
        bool, typer.Option("--skip-refused", help="Leave out the devices the checks refuse.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start a rollout and print its id: one task per matched device, WINDOW runs at once,
    the next started as each settles; it aborts once too many settled runs did not
    succeed. A device the checks refuse refuses the whole rollout, unless
    --skip-refused leaves it out (said on stderr)."""
    body = _body(fields)
    if skip_refused:
        body["skip_refused"] = True
    with connect(url, token) as client:
        rollout = client.rollouts.create(**body)
    for refused in rollout.refused:
        err_console.print(f"left out: {refused.device} ({refused.agent}): {refused.refused}")
    for device in rollout.devices:
        for warning in device.warnings:
            err_console.print(f"warning: {warning}", highlight=False)
    if as_json:
        print_json(rollout.model_dump(mode="json"))
    else:
        typer.echo(rollout.id)


def _counts(rollout: RolloutPublic) -> str:
    return ", ".join(f"{n} {state}" for state, n in rollout.counts.items())


@app.command("list")
def list_rollouts(
    site: Annotated[str | None, typer.Option("--site", help="Only this site.")] = None,
    state: Annotated[
        str | None,
        typer.Option("--state", help="going, succeeded, done, aborted or canceled."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 100,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List rollouts, newest first, with their state and how their devices stand."""
    with connect(url, token) as client:
        listed = client.rollouts.list(site, state, page_size=min(limit, MAX_PAGE_SIZE))
        rollouts = list(itertools.islice(listed, limit))
    if as_json:
        print_json([r.model_dump(mode="json") for r in rollouts])
        return
    rows = [(r.id, r.name, r.site, r.op, r.state, _counts(r)) for r in rollouts]
    print_table("Rollouts", ["id", "name", "site", "op", "state", "devices"], rows, ["id"])


@app.command("show")
def show(
    rollout_id: Annotated[int, typer.Argument(help="The rollout's id.")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a rollout: what it runs where, its state, and each device's task, run, state
    and reason."""
    with connect(url, token) as client:
        rollout = client.rollouts.get(rollout_id)
    if as_json:
        print_json(rollout.model_dump(mode="json"))
        return
    _show(rollout)


def _show(r: RolloutPublic) -> None:
    said = f" ({r.reason})" if r.reason else ""
    lines = [
        f"rollout {r.id}: {r.name}",
        f"state: {r.state}{said}",
        f"op: {r.op} {json.dumps(r.params)}",
        f"match: {json.dumps(r.match)}",
        f"window: {r.window} (asked {r.window_given}); abort at {r.abort.failed_percent:g}%"
        f" of at least {r.abort.min_settled} settled runs not succeeding",
        f"devices: {_counts(r)}",
        f"created by {r.created_by} at {r.created_at.isoformat(timespec='seconds')}",
    ]
    for line in lines:
        console.print(line, highlight=False, soft_wrap=False)
    for refused in r.refused:
        console.print(f"left out: {refused.device} ({refused.agent}): {refused.refused}")
    rows = [(d.device, d.agent, d.state, d.task_id, d.run_id) for d in r.devices]
    print_table("Devices", ["device", "agent", "state", "task", "run"], rows, ["run"])
    # The reasons below the table: beside a whole run id, 80 columns leave them no room.
    for d in r.devices:  # why each ended other than succeeded
        if d.reason and d.state in ENDED_OTHERWISE:
            console.print(f"{d.device} ({d.agent}): {d.reason}", highlight=False)


@app.command("cancel")
def cancel(
    rollout_id: Annotated[int, typer.Argument(help="The rollout's id.")],
    force: Annotated[bool, typer.Option("--force", help="Mark its runs canceled at once.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a rollout: start no more runs and cancel the ones going (their agents are
    asked to stop them; --force marks them canceled at once)."""
    with connect(url, token) as client:
        rollout = client.rollouts.cancel(rollout_id, force=force)
    if as_json:
        print_json(rollout.model_dump(mode="json"))
        return
    console.print(f"rollout {rollout.id} canceled: {_counts(rollout)}", highlight=False)
