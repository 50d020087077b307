"""The run state machine, in one place.

    pending -> waiting -> queued -> dispatched -> delivered -> accepted -> running
    -> succeeded | failed | timed_out | canceled | skipped | rejected | expired | lost

Every hop of the path is at-least-once and events may arrive out of order (an
agent's "running" can overtake the gateway's "delivered"), so a run may jump
forward over states it never reported, but never move back, and a final state
never changes. Moving to the state a run is already in is a no-op, which makes
re-applied events harmless.
"""

from __future__ import annotations

from enum import StrEnum

from tme.errors import IllegalTransition
from tme.names import unknown_choice


class RunState(StrEnum):
    pending = "pending"
    waiting = "waiting"
    queued = "queued"
    dispatched = "dispatched"
    delivered = "delivered"
    accepted = "accepted"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    timed_out = "timed_out"
    canceled = "canceled"
    skipped = "skipped"
    rejected = "rejected"
    expired = "expired"
    lost = "lost"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


ACTIVE_ORDER: tuple[RunState, ...] = (
    RunState.pending,
    RunState.waiting,
    RunState.queued,
    RunState.dispatched,
    RunState.delivered,
    RunState.accepted,
    RunState.running,
)
FINAL_STATES: frozenset[RunState] = frozenset(
    {
        RunState.succeeded,
        RunState.failed,
        RunState.timed_out,
        RunState.canceled,
        RunState.skipped,
        RunState.rejected,
        RunState.expired,
        RunState.lost,
    }
)
SUCCESS_STATES = frozenset({RunState.succeeded})
FAILURE_STATES = FINAL_STATES - SUCCESS_STATES - {RunState.skipped, RunState.canceled}

# Final states that only make sense before the agent started the work: an agent
# rejects or a command expires before it runs; a step is skipped before it is queued.
_LATEST_SOURCE: dict[RunState, RunState] = {
    RunState.rejected: RunState.accepted,
    RunState.expired: RunState.accepted,
    RunState.skipped: RunState.waiting,
}

# The words of the seed's status report, and what they mean here.
STATUS_WORDS: dict[str, RunState] = {
    "started": RunState.running,
    "complete": RunState.succeeded,
    "fail": RunState.failed,
}


# A task's status is "idle" until its first run, then the state of its latest run.
TASK_STATUSES: tuple[str, ...] = ("idle", *(state.value for state in RunState))


def task_status(word: str) -> str:
    """The task status a filter names; the report words (complete, fail, started) name
    their state. A filter compares statuses as text, so a typo would match nothing and
    look like "no such tasks": ValueError naming the statuses there are instead."""
    if word in STATUS_WORDS:
        return STATUS_WORDS[word].value
    if word in TASK_STATUSES:
        return word
    raise ValueError(unknown_choice("status", word, TASK_STATUSES))


def _rank(state: RunState) -> int:
    return len(ACTIVE_ORDER) if state.is_final else ACTIVE_ORDER.index(state)


def check_transition(current: RunState | str, requested: RunState | str) -> bool:
    """Return True when the move changes the state, False when it is a no-op.

    Raises IllegalTransition when the move is not allowed.
    """
    cur, req = RunState(current), RunState(requested)
    if cur == req:
        return False
    if cur.is_final:
        raise IllegalTransition(cur, req, "a final state never changes")
    if _rank(req) < _rank(cur):
        raise IllegalTransition(cur, req, "a run never moves backwards")
    latest = _LATEST_SOURCE.get(req)
    if latest is not None and _rank(cur) > _rank(latest):
        raise IllegalTransition(cur, req, f"only possible up to {latest.value!r}")
    return True


def is_late(from_state: RunState | str | None, to_state: RunState | str) -> bool:
    """Whether a recorded hop came after the run had moved past it (it changed no state:
    the run stayed in `from_state`)."""
    return from_state is not None and not can_transition(from_state, to_state)


def can_transition(current: RunState | str, requested: RunState | str) -> bool:
    try:
        return check_transition(current, requested)
    except IllegalTransition:
        return False
