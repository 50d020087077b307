"""`tme task ...`: define, inspect, change, wait for and delete tasks on a TME server.

Every command talks to the server through the SDK (`tme.Client`), prints a table
by default and JSON with --json, and reports errors as one line (exit 2 when the
input is wrong, 1 otherwise).
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tme.cli.common import (
    JsonOption,
    TokenOption,
    UrlOption,
    connect,
    extra_options,
    option,
    usage_error,
)
from tme.cli.output import console, fail, fire_times_text, print_json, print_table, visible
from tme.client.calls import MAX_PAGE_SIZE
from tme.errors import PreconditionFailed, yaml_problem
from tme.schemas import OPS
from tme.yaml_load import UniqueKeyLoader

app = typer.Typer(no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]
StatusFilter = Annotated[str | None, typer.Option("--status", help="Only tasks in this status.")]
SiteFilter = Annotated[str | None, typer.Option("--site", help="Only tasks for this site.")]
AgentFilter = Annotated[str | None, typer.Option("--agent", help="Only tasks for this agent.")]
OpFilter = Annotated[str | None, typer.Option("--op", help="Only tasks with this op.")]
SearchFilter = Annotated[str | None, typer.Option("--search", help="Text in name or description.")]


def _opt(flag: str, help: str, kind: Any = str) -> Any:
    return Annotated[kind | None, typer.Option(flag, help=help, show_default=False)]


FIELD_OPTIONS = [
    option("name", _opt("--name", "Task name.")),
    option("description", _opt("--description", "Free text.")),
    option("op", _opt("--op", f"{', '.join(OPS)} (default external; shell with --cmd).")),
    option("site", _opt("--site", "Target site.")),
    option("agent", _opt("--agent", "Target agent.")),
    option("device", _opt("--device", "Target device.")),
    option(
        "param",
        _opt(
            "--param", "key=value, repeatable; values are YAML: 5, true, [1, 2], text.", list[str]
        ),
    ),
    option("cmd", _opt("--cmd", "Shell command (op shell).")),
    option("cron", _opt("--cron", "Cron schedule, e.g. '0 6 * * 1-5' or '@daily'.")),
    option("every", _opt("--every", "Run every SECONDS.", float)),
    option("at", _opt("--at", "Run once at an ISO time.")),
    option("timezone", _opt("--timezone", "Time zone of the schedule (default UTC).")),
    option("timeout", _opt("--timeout", "Run timeout in seconds.", float)),
    option("priority", _opt("--priority", "0 (low) .. 9 (high).", int)),
    option("retries", _opt("--retries", "Retries after a failed run.", int)),
    option("assigned_to", _opt("--assigned-to", "Who is responsible.")),
    option("depends_on", _opt("--depends-on", "ID[:success|failure|any], repeatable.", list[str])),
    option("trigger", _opt("--trigger", "Named trigger that starts it (POST /triggers/NAME).")),
    option(
        "overlap",
        _opt("--overlap", "While a run is active: skip, queue[:MAX_QUEUED] or allow[:MAX]."),
    ),
    option("misfire", _opt("--misfire", "A late schedule slot: skip or run_once[:GRACE_S].")),
    option(
        "queue_timeout",
        _opt("--queue-timeout", "A run not started within SECONDS expires.", float),
    ),
    option(
        "deadline", _opt("--deadline", "Bound on a run and its retries, from the first.", float)
    ),
]
UPDATE_OPTIONS = [p for p in FIELD_OPTIONS if p.name != "op"]  # a task's op never changes
# Options copied to the body under the field name the API uses.
_PLAIN = {
    "name": "name",
    "description": "description",
    "op": "op",
    "cmd": "cmd",
    "timeout": "timeout_s",
    "priority": "priority",
    "assigned_to": "assigned_to",
    "trigger": "trigger",
    "queue_timeout": "queue_timeout_s",
    "deadline": "deadline_s",
}


# --- turning options into API fields --------------------------------------------


def task_fields(opts: dict[str, Any], base: dict[str, Any], item: str = "") -> dict[str, Any]:
    """The fields the options change, merged into `base` (the file or current task;
    `item` names it in an error: "task 2 of --file: ")."""
    fields = {_PLAIN[k]: v for k, v in opts.items() if k in _PLAIN and v is not None}
    if "op" in opts and opts["cmd"] and not opts["op"] and base.get("op") in (None, "external"):
        fields["op"] = "shell"  # the seed's tasks were shell commands given by `cmd`
    merged = {
        "target": _merge(base.get("target"), site=opts["site"], agent=opts["agent"],
                         device=opts["device"]),
        "params": _params(opts["param"] or [], base.get("params")),
        "schedule": _schedule(opts, base.get("schedule"), item),
        "retries": _merge(base.get("retries"), max=opts["retries"]),
        "depends_on": [_dependency(d) for d in opts["depends_on"] or []] or None,
        "overlap": _policy("--overlap", opts["overlap"], base.get("overlap"),
                           {"skip": None, "queue": "max_queued", "allow": "max"}, int),
        "misfire": _policy("--misfire", opts["misfire"], base.get("misfire"),
                           {"skip": "grace_s", "run_once": "grace_s"}, float),
    }  # fmt: skip
    fields.update({k: v for k, v in merged.items() if v is not None})
    return fields


def _merge(base: dict[str, Any] | None, **given: Any) -> dict[str, Any] | None:
    changes = {k: v for k, v in given.items() if v is not None}
    return {**(base or {}), **changes} if changes else None


def _policy(
    flag: str,
    text: str | None,
    base: dict[str, Any] | None,
    policies: dict[str, str | None],
    kind: type[int] | type[float],
) -> dict[str, Any] | None:
    """`policy` or `policy:N` merged into the task's current setting: N is the field
    `policies` names for the policy (the allow policy's max, the queue's max_queued, the
    misfire grace; None: it takes none); the API checks the ranges."""
    if text is None:
        return None
    policy, sep, raw = text.partition(":")
    if policy not in policies:
        takes = ", ".join(f"{p}[:{n}]" if n else p for p, n in policies.items())
        usage_error(f"{flag} {text!r}: expected one of {takes}")
    number = policies[policy]
    given: dict[str, Any] = {"policy": policy}
    if sep and number is None:
        usage_error(f"{flag} {text!r}: {policy} takes no number")
    if sep and number is not None:
        try:
            given[number] = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number of seconds"
            usage_error(f"{flag} {text!r}: {raw!r} after ':' is not {what} ({number})")
    return {**(base or {}), **given}


def _params(pairs: list[str], base: dict[str, Any] | None) -> dict[str, Any] | None:
    if not pairs:
        return None
    params = dict(base or {})
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            usage_error(f"--param {pair!r}: expected key=value")
        params[key.strip()] = _param_value(key.strip(), raw)
    return params


class _Loader(UniqueKeyLoader):
    """YAML as 1.2 (and JSON) reads it. PyYAML's 1.1 also takes on, off, yes and no (any
    case) as booleans: `args=[ON]` sent true, which a serial command's choice of
    "ON"/"OFF" refuses. A bool field still takes "yes" (the API's validation reads it as
    true). Its numbers differ too: 1.1 reads `12:30` as 750 (base 60), `010` as 8 (octal)
    and `1_000` as 1000, where 1.2 keeps the first and last as text and reads 10."""


_YAML_1_1_ONLY = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag not in _YAML_1_1_ONLY]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
# YAML 1.2's core schema: https://yaml.org/spec/1.2.2/#1032-tag-resolution
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+.0123456789"),
)


def _yaml_1_2_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """1.1's constructor would read a leading zero as octal and `:` as base 60."""
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_1_2_int)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def _param_value(key: str, raw: str) -> Any:
    """'12' -> 12, 'true' -> True, '1.5' -> 1.5, '[1, 2]' -> a list; words stay text (ON
    too). Text YAML cannot read ('[1, 2', '{a: 1') is refused: it was sent as that text,
    which the op then took or refused far from the typo."""
    if not raw.strip():
        return raw
    try:
        return _yaml(raw)
    except yaml.YAMLError as exc:
        as_text = shlex.quote(f"{key}={json.dumps(raw, ensure_ascii=False)}")
        usage_error(
            f"--param {key}: {raw!r} is not valid YAML ({yaml_problem(exc)}); to send it"
            f" as text, quote it: --param {as_text}"
        )


def _schedule(
    opts: dict[str, Any], base: dict[str, Any] | None, item: str = ""
) -> dict[str, Any] | None:
    kinds = {"cron": opts["cron"], "every_s": opts["every"], "at": opts["at"]}
    given = {k: v for k, v in kinds.items() if v is not None}
    timezone = opts["timezone"]
    if not given and timezone is None:
        return None
    if not given and not base:
        usage_error(f"{item}--timezone needs --cron, --every or --at (it has no schedule)")
    schedule = given or {k: v for k, v in (base or {}).items() if k in kinds and v is not None}
    zone = timezone or (base or {}).get("timezone")
    return {**schedule, "timezone": zone} if zone else schedule


def _dependency(text: str) -> dict[str, Any]:
    task, _, on = text.partition(":")
    if not task.strip().isdigit() or on not in ("", "success", "failure", "any"):
        usage_error(f"--depends-on {text!r}: expected ID[:success|failure|any]")
    return {"task": int(task), "on": on or "success"}


def _load_bodies(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The task bodies in a YAML or JSON file (JSON is YAML), and whether it held many.

    A file holds one task (a mapping of its fields), a list of tasks, or
    `{"tasks": [...]}` (the body of POST /api/v1/tasks/batch).
    """
    try:
        loaded = _yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        usage_error(f"--file {path}: not valid YAML {yaml_problem(exc)}")
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(f"--file {path}: {exc}".splitlines()[0])
    if isinstance(loaded, dict) and set(loaded) == {"tasks"}:
        loaded = loaded["tasks"]
    if isinstance(loaded, dict):
        return [loaded], False
    if not isinstance(loaded, list) or not loaded:
        usage_error(f"--file {path}: expected a mapping of task fields or a list of them")
    for index, item in enumerate(loaded):
        if not isinstance(item, dict):
            usage_error(f"--file {path}: task {index} is not a mapping of task fields")
    return loaded, True


def _details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        details = json.loads(text)
    except ValueError as exc:
        usage_error(f"--details is not JSON: {exc}")
    if not isinstance(details, dict):
        usage_error("--details must be a JSON object")
    return details


# --- rendering --------------------------------------------------------------------


def _target_text(target: Any) -> str:
    if target is None:
        return ""
    return "/".join(p for p in (target.site, target.agent, target.device) if p)


def _schedule_text(schedule: Any) -> str:
    if schedule is None:
        return ""
    if schedule.cron:
        return f"cron {schedule.cron} ({schedule.timezone})"
    if schedule.every_s:
        return f"every {schedule.every_s:g}s"
    return f"at {schedule.at.isoformat()}"


def _when(value: Any) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def _warn(tasks: list[Any]) -> None:
    """What the controller noticed but took (an agent never seen), on stderr: the
    task's id stays alone on stdout for scripts."""
    for task in tasks:
        for warning in task.warnings:
            typer.echo(f"warning: task {task.id}: {visible(warning)}", err=True)


def _status_text(task: Any) -> str:
    """Its status, and whether it is paused: a paused task's schedule, trigger and
    dependencies start nothing, which the list did not show."""
    return f"{task.status} (paused)" if task.paused else str(task.status)


def _when_text(task: Any) -> str:
    """Its schedule and when it fires next, in the schedule's zone (none while paused)."""
    upcoming = fire_times_text(task, first=1)
    schedule = _schedule_text(task.schedule)
    return f"{schedule}; next {upcoming}" if upcoming else schedule


def _print_tasks(tasks: list[Any]) -> None:
    rows = [
        [t.id, t.name, t.op, _target_text(t.target), _status_text(t), _when_text(t)] for t in tasks
    ]
    print_table("Tasks", ["id", "name", "op", "target", "status", "schedule"], rows)


def _show_task(task: Any, runs: list[Any]) -> None:
    skip = {"target", "schedule", "created_at", "started_at", "finished_at", "updated_at"}
    skip.add("warnings")  # only in a create's or change's answer
    rows = [[k, json.dumps(v) if isinstance(v, dict | list) else v]
            for k, v in task.model_dump(mode="json").items() if k not in skip]  # fmt: skip
    rows = [[k, fire_times_text(task) if k == "next_fire_times" else v] for k, v in rows]
    rows += [["target", _target_text(task.target)], ["schedule", _schedule_text(task.schedule)]]
    times = ("created_at", "started_at", "finished_at", "updated_at")
    rows += [[k, _when(getattr(task, k))] for k in times]
    print_table(f"Task {task.id}", ["field", "value"], rows)
    run_rows = [[r.id, r.state, r.attempt, _when(r.created_at), _when(r.finished_at), r.reason]
                for r in runs]  # fmt: skip
    columns = ["run", "state", "attempt", "created", "finished", "reason"]
    print_table("Latest runs", columns, run_rows, whole=["run"])


# --- commands ------------------------------------------------------------------------


@app.command("list")
def list_tasks(
    status: StatusFilter = None,
    site: SiteFilter = None,
    agent: AgentFilter = None,
    op: OpFilter = None,
    search: SearchFilter = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="At most N tasks; 0 = all.")] = 100,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """List tasks, newest first."""
    page_size = min(limit, 100) if limit > 0 else 100
    with connect(url, token) as client:
        found = client.tasks.list(status, site, agent, op, search, page_size=page_size)
        tasks = list(islice(found, limit) if limit > 0 else found)
    if as_json:
        print_json([t.model_dump(mode="json") for t in tasks])
    else:
        _print_tasks(tasks)


@app.command("show")
def show(
    task_id: IdArg,
    runs: Annotated[int, typer.Option("--runs", help="How many latest runs to show.")] = 10,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show a task's definition and its latest runs."""
    with connect(url, token) as client:
        task = client.tasks.get(task_id)
        page = min(max(runs, 1), MAX_PAGE_SIZE)  # more runs than a page: several pages
        latest = list(islice(client.tasks.runs(task_id, page_size=page), max(runs, 0)))
    if as_json:
        print_json({"task": task.model_dump(mode="json"),
                    "runs": [r.model_dump(mode="json") for r in latest]})  # fmt: skip
    else:
        _show_task(task, latest)


@app.command("create")
@extra_options(FIELD_OPTIONS, into="fields")
def create(
    fields: dict[str, Any],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            help="A task body (YAML or JSON), or a list of them: created together, all or none.",
        ),
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Repeat safely: same key, same task.")
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a task and print its id; a --file of many tasks prints them as a table.

    The options override the file's fields, in every task of a list. A machine task is
    checked against what its agent published (an unknown point, a value outside its
    limits: refused); a target never seen is created with a warning on stderr.
    """
    from tme.client.calls import validated
    from tme.schemas import TaskCreate

    bodies, many = _load_bodies(file) if file else ([{}], False)
    merged: list[TaskCreate | Mapping[str, Any]] = [
        {**body, **task_fields(fields, body, f"task {index} of --file: " if many else "")}
        for index, body in enumerate(bodies)
    ]
    with connect(url, token) as client:
        if many:
            tasks = client.tasks.create_many(merged, idempotency_key=idempotency_key)
        else:
            body = validated(TaskCreate, dict(merged[0]))
            tasks = [client.tasks.create(body, idempotency_key=idempotency_key)]
    _warn(tasks)
    if as_json:
        dumped = [t.model_dump(mode="json") for t in tasks]
        print_json(dumped if many else dumped[0])
    elif many:
        _print_tasks(tasks)
    else:
        typer.echo(tasks[0].id)


# What `update --clear` removes: the option's name -> (API field, its empty value).
# The options that set them have no way to say "none" (an empty --cron is no cron).
CLEARABLE: dict[str, tuple[str, Any]] = {
    "schedule": ("schedule", None),
    "depends-on": ("depends_on", []),
    "trigger": ("trigger", None),
    "timeout": ("timeout_s", None),
    "deadline": ("deadline_s", None),
    "queue-timeout": ("queue_timeout_s", None),
    "assigned-to": ("assigned_to", None),
}
_CLEARED_BY = {"schedule": ("cron", "every", "at", "timezone")}


def _cleared(names: list[str], opts: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in names:
        if name not in CLEARABLE:
            usage_error(f"--clear {name!r}: expected one of {', '.join(CLEARABLE)}")
        given = [o for o in _CLEARED_BY.get(name, (name.replace("-", "_"),)) if opts.get(o)]
        if given:
            usage_error(f"--clear {name} and --{given[0].replace('_', '-')} contradict")
        field, empty = CLEARABLE[name]
        changes[field] = empty
    return changes


UPDATE_ATTEMPTS = 5  # reads and changes of a task others keep changing meanwhile


@app.command("update")
@extra_options(UPDATE_OPTIONS, into="fields")
def update(
    task_id: IdArg,
    fields: dict[str, Any],
    status: Annotated[
        str | None, typer.Option("--status", help="Report: started, complete or fail.")
    ] = None,
    log: Annotated[str | None, typer.Option("--log", help="Log text sent with --status.")] = None,
    details: Annotated[
        str | None, typer.Option("--details", help="JSON object sent with --status.")
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            help=f"Remove a field, repeatable: {', '.join(CLEARABLE)} (--clear schedule: a"
            " task that runs only by trigger, dependency or run now).",
        ),
    ] = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change a task's fields and/or report an external task's status."""
    report = {"status": status, "log": log, "details": _details(details)}
    cleared = _cleared(clear or [], fields)
    _params(fields["param"] or [], None)  # a --param YAML cannot read: refused, nothing sent
    with connect(url, token) as client:
        # The change is made to the task as read, and sent naming that revision: when
        # someone else changed it meanwhile (412), it is read and made again, so a
        # --param merged into params never drops another client's change.
        for attempt in range(UPDATE_ATTEMPTS):
            read = client.tasks.get(task_id)
            changes = task_fields(fields, read.model_dump(mode="json"))
            changes.update(cleared)
            changes.update({k: v for k, v in report.items() if v is not None})
            try:
                task = client.tasks.update(task_id, if_match=read.revision, **changes)
                break
            except PreconditionFailed:
                if attempt == UPDATE_ATTEMPTS - 1:
                    raise
    _warn([task])
    if as_json:
        print_json(task.model_dump(mode="json"))
    else:
        console.print(f"task {task.id} updated; status {task.status}", highlight=False)


@app.command("delete")
def delete(
    task_id: IdArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a task (and its schedule)."""
    if not yes and not typer.confirm(f"Delete task {task_id}?"):
        fail("not deleted")
    with connect(url, token) as client:
        client.tasks.delete(task_id)
    console.print(f"task {task_id} deleted", highlight=False)


@app.command("wait")
def wait(
    task_id: IdArg,
    timeout: Annotated[float, typer.Option("--timeout", help="Give up after SECONDS.")] = 60.0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Wait until a task's latest run is final and settled (no automatic retry to come);
    exit 0 only if it succeeded."""
    with connect(url, token) as client:
        task = client.tasks.wait(task_id, timeout=timeout)
    if as_json:
        print_json(task.model_dump(mode="json"))
    else:
        console.print(f"task {task.id} {task.status}", highlight=False)
    if task.status not in ("succeeded", "complete"):
        raise typer.Exit(1)


# Run control on a task (run now, pause, resume) is defined beside `tme run`.
from tme.cli.run_cmd import register_task_commands  # noqa: E402

register_task_commands(app)
