"""The controller's timeouts, for runs whose agent or gateway stays silent.

- queue timeout: a run not accepted by an agent by its not_after is expired (the
  agent refuses the command if it arrives later);
- run timeout: a run accepted or running past its timeout (plus a grace, so the
  agent's own timeout report normally wins) is timed_out, or lost for a write,
  whose outcome on the machine is then unknown. An external task (done by a person
  or another system, who reports it) has only the timeout it was given: the
  default, made for machines, would time out a walk to a valve. A device stop that
  says it holds the safe values (a write it cut off may still land) has its timeout
  counted from the end of that hold, as its agent counts it;
- total deadline: a run still active past its task's deadline is timed_out.
A result that arrives afterwards is kept beside the final state as a late result.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, or_
from sqlmodel import Session, col, select

from tme.controller.retries import WRITE_OPS
from tme.controller.services.runs import record_hop
from tme.controller.store.models import Agent, Run, Task
from tme.controller.store.planner import rare
from tme.controller.store.workflow_models import RunLink
from tme.states import FINAL_STATES, RunState

WAITING_FOR_AGENT = [RunState.queued, RunState.dispatched, RunState.delivered]
AT_AGENT = [RunState.accepted, RunState.running]
# Named by the states a run can still leave, not by the final ones: `state IN (...)`
# reads the runs index, so each pass costs the active runs; `NOT IN (finals)` read
# every run the controller ever kept, twice a second.
ACTIVE_VALUES = [s.value for s in RunState if s not in FINAL_STATES]
GRACE_S = 5.0  # the agent enforces timeouts itself; the controller steps in this much later
# A stop holds its safe values for its device's answer time (seconds, a minute on a slow
# radio link); a hold said longer than this does not keep a silent run from timing out.
MAX_HOLD_S = 3600.0


def check_timeouts(
    session: Session, now: datetime, default_timeout_s: float, grace_s: float = GRACE_S
) -> int:
    changed = 0
    grace = timedelta(seconds=grace_s)
    for run in session.exec(
        _locked(
            select(Run).where(
                rare(col(Run.state).in_(WAITING_FOR_AGENT)), col(Run.not_after) < now - grace
            )
        )
    ):
        changed += record_hop(session, run, RunState.expired, reason=_queue_timeout(session, run))
    for run, task in session.exec(
        _locked(
            select(Run, Task)
            .join(Task, col(Task.id) == col(Run.task_id))
            .where(rare(col(Run.state).in_(AT_AGENT)))
            .where(or_(col(Task.op) != "external", col(Task.timeout_s).is_not(None)))
        )
    ):
        timeout = timedelta(seconds=task.timeout_s or default_timeout_s)
        since = run.started_at or run.updated_at
        held = held_s(run)
        if held:  # its agent counts the timeout from the end of the hold, as does this
            since = max(since, run.updated_at + timedelta(seconds=held))
        if now <= since + timeout + grace:
            continue
        silent = f"controller watchdog: no result {timeout.total_seconds():g} s after it started"
        if task.op in WRITE_OPS:
            changed += record_hop(
                session, run, RunState.lost, reason=silent + "; a write's outcome is unknown"
            )
        else:
            changed += record_hop(session, run, RunState.timed_out, reason=silent)
    for run in session.exec(
        _locked(
            select(Run)
            .join(RunLink, col(RunLink.run_id) == col(Run.id))
            .where(col(RunLink.deadline_at) < now, rare(col(Run.state).in_(ACTIVE_VALUES)))
        )
    ):
        changed += record_hop(
            session, run, RunState.timed_out, reason="total deadline across retries passed"
        )
    return changed


def held_s(run: Run) -> float:
    """How long a stop said (when its first writes were done: the run's updated_at) it
    holds the safe values before writing them again, which its timeout does not count:
    a write it cut off may land until then. 0: it holds nothing, or has not said."""
    first_pass = (run.result or {}).get("first_pass")
    hold = first_pass.get("hold_s") if isinstance(first_pass, dict) else None
    if isinstance(hold, bool) or not isinstance(hold, int | float) or not math.isfinite(hold):
        return 0.0
    return min(max(float(hold), 0.0), MAX_HOLD_S)


def _queue_timeout(session: Session, run: Run) -> str:
    """Why the run expired, naming a target agent this controller never heard of (a
    typo, or one not provisioned yet): the create's answer warned of it, once."""
    reason = "queue timeout: no agent accepted it by not_after"
    task = session.get(Task, run.task_id)
    if task is None or not task.site or not task.agent:
        return reason
    seen = session.exec(
        select(Agent.id)
        .where(Agent.site == task.site, Agent.name == task.agent, Agent.role == "agent")
        .limit(1)
    ).first()
    if seen is None:
        reason += f" (agent {task.agent!r} has never been seen at site {task.site!r})"
    return reason


Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])


def _locked(query: Q) -> Q:
    """The runs a pass may move, locked in id order, as HopBatch locks them (so the two
    never deadlock on PostgreSQL; on SQLite the read takes the write gate): an answer
    being committed for one of them is waited for, and the run is read as it left it."""
    return query.order_by(col(Run.id)).with_for_update(of=Run)
