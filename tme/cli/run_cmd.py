"""Run control from the command line, over the SDK.

tme task run|pause|resume ID      start a run now; stop or restart its automatic starts
tme task check ID                 ask its agent what it would do now (a dry run)
tme run show|cancel|retry RUN_ID  one run; cancel it (--force); run it again
tme run workflow WORKFLOW_ID      every run of one workflow run (a trigger's, a schedule's...)
tme run cancel --workflow ID      stop a workflow run: its runs going, its steps to come
tme trigger fire NAME             start every task bound to a named trigger
"""

from __future__ import annotations

import json
import time
from datetime import UTC, date, datetime
from typing import Annotated

import typer
from rich.markup import escape

from tme.cli.common import (
    JsonOption,
    TimeoutOption,
    TokenOption,
    UrlOption,
    WaitOption,
    connect,
)
from tme.cli.output import console, fire_times_text, print_json, print_table, visible
from tme.client.base import check_seconds
from tme.durations import duration_line
from tme.effect_text import effect_line
from tme.errors import NotFound
from tme.first_pass_text import first_pass_lines, first_pass_of
from tme.schemas import RunPublic, TaskPublic, WorkflowCanceled
from tme.states import FINAL_STATES

FINAL_NAMES = frozenset(state.value for state in FINAL_STATES)

run_app = typer.Typer(no_args_is_help=True)
trigger_app = typer.Typer(no_args_is_help=True)

TaskIdArg = Annotated[int, typer.Argument(help="Task id.", show_default=False)]
RunIdArg = Annotated[str, typer.Argument(help="Run id.", show_default=False)]


def _print_run(run: RunPublic, as_json: bool, what: str) -> None:
    if as_json:
        print_json(run.model_dump(mode="json"))
        return
    # "succeeded (succeeded)" says it twice: a reason that only repeats the state is left out
    reason = f" ({escape(run.reason)})" if run.reason and run.reason != run.state else ""
    text = f"{what}: run {run.id} of task {run.task_id} is {run.state}{reason}"
    if what == "cancel" and run.state not in {state.value for state in FINAL_STATES}:
        # in the agent's hands: the answer to the stop request settles it
        text = (
            f"cancel: asked the agent to stop run {run.id} of task {run.task_id}; it is"
            f" {run.state}{reason} until the agent answers (`tme run show {run.id}`;"
            " --force marks it canceled without waiting)"
        )
    if what in STARTS and run.state == "skipped":  # its overlap policy refused the start
        text = f"{STARTS[what]} refused: run {run.id} of task {run.task_id} is skipped{reason}"
    console.print(text, highlight=False)


# A start by hand the task's overlap policy may refuse: answered as a skipped run, which
# `started: ... is skipped` and exit 0 told a script as if the run had begun.
STARTS = {"started": "run now", "retry": "retry"}


def _exit_if_refused(run: RunPublic) -> None:
    if run.state == "skipped":
        raise typer.Exit(1)


def _print_pause(task: TaskPublic, as_json: bool) -> None:
    if as_json:
        print_json(task.model_dump(mode="json"))
        return
    if task.paused:
        text = (
            "paused: no schedule, trigger, dependency or planned retry starts it"
            " (run now and a retry by hand still do)"
        )
    else:
        upcoming = fire_times_text(task)
        text = f"active; next fires: {upcoming}" if upcoming else "active"
        at = task.schedule.at if task.schedule is not None else None
        if at is not None and not upcoming and task.status == "idle":
            # its time passed during the pause, beyond its misfire grace: it never fires
            text += (
                f"; its one-off time {at.isoformat()} has passed and it will not"
                f" fire (`tme task run {task.id}` starts it now)"
            )
    console.print(f"task {task.id} {text}", highlight=False)


def register_task_commands(app: typer.Typer) -> None:
    """Add `run`, `pause` and `resume` to `tme task`."""

    @app.command("run")
    def run_now(
        task_id: TaskIdArg,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Start a run of the task now (its overlap policy applies; a paused task runs too)."""
        with connect(url, token) as client:
            started = client.tasks.run(task_id)
        _print_run(started, as_json, "started")
        _exit_if_refused(started)

    @app.command("check")
    def check(
        task_id: TaskIdArg,
        wait: WaitOption = True,
        timeout: TimeoutOption = 90.0,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Ask the task's agent what it would do now, without running it (a dry run): the
        envelope, a lockout or stop, and what its interlocks and step limit read from the
        machine now; nothing is written or sent. Exit 0 when it would run, 1 when it would
        be refused or could not be checked (with --wait, the default)."""
        with connect(url, token) as client:
            started = client.tasks.check(task_id)
            if wait:
                client.tasks.wait(started.task_id, timeout=timeout)
            run = client.runs.get(started.id) if wait else None
        if as_json:
            print_json((run or started).model_dump(mode="json"))
        elif run is None:
            console.print(
                f"check of task {task_id}: run {started.id} of task {started.task_id}"
                f" (`tme run show {started.id}` for the agent's answer)",
                highlight=False,
            )
        else:
            # the agent's answer starts "would ..." when it checked the task
            said = "" if run.state in ("succeeded", "rejected") else " could not be checked"
            console.print(
                f"task {task_id}{said}: {escape(run.reason or run.state)}"
                f" (check run {run.id} of task {run.task_id})",
                highlight=False,
            )
            for line in run.log:  # what the agent read for it (interlocks, step limit)
                console.print(f"  {visible(line.line)}", highlight=False, markup=False)
        if wait and (run is None or run.state != "succeeded"):
            raise typer.Exit(1)

    @app.command("pause")
    def pause(
        task_id: TaskIdArg,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Stop the task's automatic starts: its schedule, trigger, dependencies and
        planned retries (a retry whose time comes waits, held, until resume)."""
        with connect(url, token) as client:
            _print_pause(client.tasks.pause(task_id), as_json)

    @app.command("resume")
    def resume(
        task_id: TaskIdArg,
        url: UrlOption = None,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Let its schedule, trigger and dependencies start it again (slots during the
        pause are not owed); a planned retry whose time came during the pause starts now,
        or once the run of the task going on finishes (its overlap policy)."""
        with connect(url, token) as client:
            _print_pause(client.tasks.resume(task_id), as_json)


@run_app.command("show")
def show(
    run_id: RunIdArg, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Show a run with its state changes, its result and its log."""
    with connect(url, token) as client:
        detail = client.runs.get(run_id)
    if as_json:
        print_json(detail.model_dump(mode="json"))
        return
    _print_run(detail, False, "run")
    took = duration_line(detail.took_s, detail.usual_s, detail.usual_runs, detail.slow)
    if took:
        console.print(took, highlight=False)
    effect = effect_line(detail.result)  # a write's params.expect, as its agent saw it
    if effect is not None:
        console.print(f"effect: {escape(effect)}", highlight=False)
    first = first_pass_of(detail.result)  # a device stop's first writes, as its agent said
    if first is not None:
        for said in first_pass_lines(first, detail.state in FINAL_STATES):
            console.print(escape(said), highlight=False)
    if detail.workflow_id is not None:
        console.print(
            f"workflow run {detail.workflow_id}, cause: {detail.cause}"
            f" (its runs: `tme run workflow {detail.workflow_id}`)",
            highlight=False,
        )
    day = detail.created_at.astimezone(UTC).date()
    rows = [
        (_hop_time(e.at, day), e.from_state, f"{e.to_state} (late)" if e.late else e.to_state,
         e.source, e.reason if e.reason != e.to_state else "")
        for e in detail.events
    ]  # fmt: skip
    title = f"transitions (UTC, {day.isoformat()})"
    print_table(title, ["at", "from", "to", "source", "reason"], rows, whole=["at", "to"])
    if any(e.late for e in detail.events):
        console.print(
            "(late): recorded after the run had moved past it; it changed no state",
            highlight=False,
        )
    if detail.result is not None:  # what the machine answered (values, a reply, a stop)
        console.print("result:", highlight=False)
        console.print(escape(json.dumps(detail.result, indent=2, default=str)), highlight=False)
    for line in detail.log:
        console.print(f"{line.at.isoformat()}  {escape(line.line)}", highlight=False)


def _hop_time(at: datetime, day: date) -> str:
    """A hop's time of day in UTC to the millisecond (hops come milliseconds apart), with
    its date where it is not the run's day: a column 12 wide, where a whole timestamp
    wrapped into three lines in 80 columns."""
    at = at.astimezone(UTC)
    time_of_day = at.strftime("%H:%M:%S.") + f"{at.microsecond // 1000:03d}"
    return time_of_day if at.date() == day else f"{at.date().isoformat()} {time_of_day}"


@run_app.command("workflow")
def workflow(
    workflow_id: Annotated[
        str, typer.Argument(help="Workflow run id (its first run's id).", show_default=False)
    ],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Wait until every run in it is settled; 1 if a task failed."),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="With --wait: give up after S.")
    ] = 60.0,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show every run of a workflow run, oldest first: the task that started it and the
    dependents started or skipped after it (a dependent not decided yet has no run).
    With --wait, wait until it is over: every run final and settled, so each dependent
    has been started or skipped (`tme task wait` on a dependent may see its run of an
    earlier workflow run, before this one reaches it)."""
    with connect(url, token) as client:
        timeout = check_seconds("timeout", timeout)
        runs = client.runs.workflow(workflow_id)
        deadline = time.monotonic() + timeout
        while wait and _going(runs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"workflow run {workflow_id}: {_going(runs)} of {len(runs)} run(s) not"
                    f" settled after {timeout:g}s"
                )
            time.sleep(min(WORKFLOW_POLL_S, remaining))  # polling interval of a deadline wait
            runs = client.runs.workflow(workflow_id)
    if as_json:
        print_json([run.model_dump(mode="json") for run in runs])
    else:
        _print_workflow(workflow_id, runs)
    latest = {run.task_id: run for run in runs}  # oldest first: a retry's run comes last
    if wait and any(run.state in FAILURES for run in latest.values()):
        raise typer.Exit(1)


WORKFLOW_POLL_S = 0.2  # as tasks.wait() polls: a few requests a second while waiting
FAILURES = frozenset({"failed", "timed_out", "rejected", "expired", "lost"})  # `on: failure`


def _going(runs: list[RunPublic]) -> int:
    """Runs not yet final and settled (a settled run's dependents are decided)."""
    return sum(1 for run in runs if not (run.settled and run.state in FINAL_NAMES))


def _print_workflow(workflow_id: str, runs: list[RunPublic]) -> None:
    # One line a run, not a table: a run id and a reason do not fit in 80 columns side
    # by side without cutting or folding one of them; a line wraps as the terminal likes.
    console.print(f"workflow run {workflow_id}: {len(runs)} run(s), oldest first", highlight=False)
    for r in runs:
        state = r.state if r.attempt == 1 else f"{r.state} (attempt {r.attempt})"
        line = f"task {r.task_id}  run {r.id}  {state}  {r.cause}  {escape(r.reason)}"
        console.print(line.rstrip(), highlight=False, soft_wrap=True)
    going = _going(runs)
    console.print(
        f"{going} of {len(runs)} run(s) not settled yet" if going else "every run is settled",
        highlight=False,
    )


@run_app.command("cancel")
def cancel(
    run_id: Annotated[
        str,
        typer.Argument(help="Run id (with --workflow: the workflow run's id).", show_default=False),
    ],
    workflow: Annotated[
        bool,
        typer.Option(
            "--workflow",
            help="Cancel the whole workflow run: its runs still going, and every step of it"
            " not started yet (skipped, failure and any dependents too).",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Mark it canceled even if the agent is gone.")
    ] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Cancel a queued run at once, or ask the agent to stop a running one. With
    --workflow, stop the workflow run as a whole: each of its runs still going is
    canceled so, and none of its steps starts or is retried afterwards."""
    with connect(url, token) as client:
        if workflow:
            _print_workflow_cancel(client.runs.cancel_workflow(run_id, force=force), as_json)
            return
        _print_run(client.runs.cancel(run_id, force=force), as_json, "cancel")


def _print_workflow_cancel(done: WorkflowCanceled, as_json: bool) -> None:
    if as_json:
        print_json(done.model_dump(mode="json"))
        return
    asked = [r for r in done.runs if r.state not in FINAL_NAMES]
    console.print(
        f"cancel: workflow run {done.workflow_id} canceled by {escape(done.canceled_by)}:"
        f" {len(done.runs) - len(asked)} run(s) canceled, {len(asked)} asked to stop;"
        " its steps not started yet are skipped",
        highlight=False,
    )
    for r in done.runs:
        console.print(f"task {r.task_id}  run {r.id}  {r.state}", highlight=False)
    if asked:  # in their agents' hands: their answers settle them
        console.print(
            f"(`tme run workflow {done.workflow_id} --wait` waits for their agents' answers;"
            " --force marks them canceled without waiting)",
            highlight=False,
        )


@run_app.command("retry")
def retry(
    run_id: RunIdArg, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Run a finished step again in its workflow run (its overlap policy applies, as for
    run now: a refused retry is a skipped run; a paused task runs too). A planned
    automatic retry starts now instead, or waits for the run of the task going on."""
    with connect(url, token) as client:
        retried = client.runs.retry(run_id)
    _print_run(retried, as_json, "retry")
    _exit_if_refused(retried)


@trigger_app.command("fire")
def fire(
    name: Annotated[str, typer.Argument(help="Trigger name.", show_default=False)],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Start every task bound to the named trigger; exit 1 when no task is bound to it
    (a name nothing carries, or a typo) or every run of it was refused (skipped: its task
    paused, or its overlap policy)."""
    with connect(url, token) as client:
        fired = client.triggers.fire(name)
        if not fired.runs:
            # The API answers a name no task (that the token reaches) carries as an empty
            # list, so as not to tell of other sites' tasks; started nothing is an error
            # here, as an unknown task id is: a typo'd name exited 0 with an empty table.
            raise NotFound(
                f"no task is bound to trigger {name!r} (that your token reaches):"
                " nothing was started",
                details={"trigger": name},
            )
    if as_json:
        print_json(fired.model_dump(mode="json"))
    else:
        rows = [(r.task_id, r.id, r.state, r.reason) for r in fired.runs]
        columns = ["task", "run", "state", "reason"]
        print_table(f"trigger {name}: {len(rows)} run(s)", columns, rows, whole=["run"])
    if fired.runs and all(run.state == "skipped" for run in fired.runs):
        # every bound task paused, or refused by its overlap policy: nothing began, as
        # for `tme task run` refused
        typer.echo(
            f"refused: no task bound to trigger {name!r} was started (each run is skipped,"
            " its reason says why)",
            err=True,
        )
        raise typer.Exit(1)
