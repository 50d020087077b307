"""`tme task ...`: define, inspect, change, wait for and delete tasks on a TME server.

Every command talks to the server through the SDK (`tme.Client`), prints a table
by default and JSON with --json, and reports errors as one line (exit 2 when the
input is wrong, 1 otherwise). What the options of create and update mean as task
fields is in task_input.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from datetime import UTC
from itertools import islice
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from tme.cli.common import (
    JsonOption,
    TokenOption,
    UrlOption,
    connect,
    extra_options,
)
from tme.cli.output import console, fail, fire_times_text, print_json, print_table, visible
from tme.cli.task_input import (
    CLEARABLE,
    FIELD_OPTIONS,
    UPDATE_OPTIONS,
    check_params,
    cleared_fields,
    load_bodies,
    report_details,
    task_fields,
)
from tme.client.calls import MAX_PAGE_SIZE
from tme.durations import seconds, took_s
from tme.errors import PreconditionFailed
from tme.shown_text import shown

app = typer.Typer(no_args_is_help=True)

IdArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]
StatusFilter = Annotated[str | None, typer.Option("--status", help="Only tasks in this status.")]
SiteFilter = Annotated[str | None, typer.Option("--site", help="Only tasks for this site.")]
AgentFilter = Annotated[str | None, typer.Option("--agent", help="Only tasks for this agent.")]
OpFilter = Annotated[str | None, typer.Option("--op", help="Only tasks with this op.")]
SearchFilter = Annotated[str | None, typer.Option("--search", help="Text in name or description.")]


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


def _name(task: Any) -> str:
    """Its name as a name shows: a joiner stored before names refused it is written as
    its escape too (the console keeps joiners, which shape a description's words)."""
    return shown(task.name, one_line=True)


def _print_tasks(tasks: list[Any]) -> None:
    rows = [
        [t.id, _name(t), t.op, _target_text(t.target), _status_text(t), _when_text(t)]
        for t in tasks
    ]
    print_table("Tasks", ["id", "name", "op", "target", "status", "schedule"], rows)


def _show_task(task: Any, runs: list[Any], runs_asked: bool = True) -> None:
    skip = {"target", "schedule", "created_at", "started_at", "finished_at", "updated_at"}
    skip.add("warnings")  # only in a create's or change's answer
    rows = [[k, json.dumps(v) if isinstance(v, dict | list) else v]
            for k, v in task.model_dump(mode="json").items() if k not in skip]  # fmt: skip
    rows = [[k, fire_times_text(task) if k == "next_fire_times" else v] for k, v in rows]
    rows = [[k, _name(task) if k == "name" else v] for k, v in rows]
    rows += [["target", _target_text(task.target)], ["schedule", _schedule_text(task.schedule)]]
    times = ("created_at", "started_at", "finished_at", "updated_at")
    rows += [[k, _when(getattr(task, k))] for k in times]
    print_table(f"Task {task.id}", ["field", "value"], rows)
    if runs_asked:  # --runs 0 asked for none: "No runs yet" would say it has none
        _print_runs(runs)


def _print_runs(runs: list[Any]) -> None:
    """Two lines a run, not a table: its id (whole, to copy into `tme run show`), state
    and creation time fit 80 columns, and how long it took and its reason wrap below.
    A table of six columns folded every time into a column of six lines."""
    console.print("Latest runs (times in UTC)" if runs else "No runs yet", highlight=False)
    for run in runs:
        state = run.state if run.attempt == 1 else f"{run.state} (attempt {run.attempt})"
        created = run.created_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        console.print(Text(f"{run.id}  {state}  {created}"), highlight=False)
        took = took_s(run.started_at, run.finished_at)
        reason = run.reason if run.reason != run.state else ""  # "succeeded" says nothing more
        said = "; ".join(t for t in (took is not None and f"took {seconds(took)}", reason) if t)
        if said:
            # Wrapped here, each line indented: rich wrapped "    " + text from column 0.
            width = max(20, console.width - 4)
            for line in textwrap.wrap(visible(said), width, break_on_hyphens=False):
                console.print(Text("    " + line), highlight=False, soft_wrap=True)


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
    runs: Annotated[
        int, typer.Option("--runs", min=0, help="How many latest runs to show (0: none).")
    ] = 10,
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
        _show_task(task, latest, runs_asked=runs > 0)


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

    bodies, many = load_bodies(file) if file else ([{}], False)
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
    report = {"status": status, "log": log, "details": report_details(details)}
    cleared = cleared_fields(clear or [], fields)
    check_params(fields["param"] or [])  # a --param YAML cannot read: nothing is sent
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


@app.command("resources")
def resources(
    url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """List the exclusive resources your tasks name: the run holding each, or free, and
    the runs waiting for it, next first."""
    with connect(url, token) as client:
        found = client.tasks.resources()
    if as_json:
        print_json([resource.model_dump(mode="json") for resource in found])
        return
    if not found:
        console.print("no task names an exclusive resource", highlight=False)
    for resource in found:
        tasks = ", ".join(str(task_id) for task_id in resource.tasks)
        if resource.holder is not None:
            held = "held"
        else:
            held = "held by a run of another site" if resource.held_elsewhere else "free"
        console.print(Text(visible(f"{resource.name} (tasks {tasks}): {held}")))
        if resource.holder is not None:
            holder = resource.holder
            console.print(Text(visible(f"  by {_resource_run(holder)}, {holder.state}")))
        for place, run in enumerate(resource.waiting, 1):
            said = f"  {place}. waiting: {_resource_run(run)}, priority {run.priority}"
            console.print(Text(visible(said)))


def _resource_run(run: Any) -> str:
    return f"run {run.run_id} of task {run.task_id} ({run.task_name})"


# Run control on a task (run now, pause, resume) is defined beside `tme run`.
from tme.cli.run_cmd import register_task_commands  # noqa: E402

register_task_commands(app)
