"""The run state machine: every pair of states, finals, no-ops and random sequences."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tme.errors import IllegalTransition
from tme.states import (
    ACTIVE_ORDER,
    FAILURE_STATES,
    FINAL_STATES,
    STATUS_WORDS,
    SUCCESS_STATES,
    RunState,
    can_transition,
    check_transition,
    is_late,
)

ALL = list(RunState)
ACTIVE = list(ACTIVE_ORDER)
FINALS = sorted(FINAL_STATES)
# The last active state from which each limited final state may still be reached.
LIMITS = {
    RunState.rejected: RunState.accepted,
    RunState.expired: RunState.accepted,
    RunState.skipped: RunState.waiting,
}


def expected_legal(cur: RunState, req: RunState) -> bool:
    """The rules of DESIGN.md written out independently of tme.states."""
    if cur in FINAL_STATES:
        return False
    if req in FINAL_STATES:
        limit = LIMITS.get(req)
        return limit is None or ACTIVE.index(cur) <= ACTIVE.index(limit)
    return ACTIVE.index(req) > ACTIVE.index(cur)


def test_partition_of_states() -> None:
    assert set(ACTIVE) | FINAL_STATES == set(ALL)
    assert not set(ACTIVE) & FINAL_STATES
    assert {RunState.succeeded} == SUCCESS_STATES
    assert RunState.skipped not in FAILURE_STATES
    assert RunState.canceled not in FAILURE_STATES
    assert {RunState.failed, RunState.timed_out, RunState.lost} <= FAILURE_STATES
    assert all(s.is_final for s in FINALS) and not any(s.is_final for s in ACTIVE)


def test_status_words_of_the_seed() -> None:
    assert {
        "started": RunState.running,
        "complete": RunState.succeeded,
        "fail": RunState.failed,
    } == STATUS_WORDS


@pytest.mark.parametrize("state", ALL, ids=str)
def test_same_state_is_a_no_op(state: RunState) -> None:
    assert check_transition(state, state) is False
    assert check_transition(state.value, state.value) is False
    assert can_transition(state, state) is False


@pytest.mark.parametrize(
    ("cur", "req"), [(c, r) for c, r in itertools.product(ALL, ALL) if c != r], ids=str
)
def test_every_move(cur: RunState, req: RunState) -> None:
    if expected_legal(cur, req):
        assert check_transition(cur, req) is True
        assert can_transition(cur, req) is True
    else:
        with pytest.raises(IllegalTransition) as info:
            check_transition(cur, req)
        assert info.value.current == cur.value and info.value.requested == req.value
        assert info.value.details == {"current": cur.value, "requested": req.value}
        assert cur.value in info.value.message and req.value in info.value.message
        assert can_transition(cur, req) is False


@pytest.mark.parametrize(
    ("cur", "req", "why"),
    [
        (RunState.succeeded, RunState.failed, "final state never changes"),
        (RunState.timed_out, RunState.succeeded, "final state never changes"),
        (RunState.lost, RunState.running, "final state never changes"),
        (RunState.running, RunState.queued, "never moves backwards"),
        (RunState.delivered, RunState.dispatched, "never moves backwards"),
        (RunState.waiting, RunState.pending, "never moves backwards"),
        (RunState.running, RunState.rejected, "'accepted'"),
        (RunState.running, RunState.expired, "'accepted'"),
        (RunState.queued, RunState.skipped, "'waiting'"),
    ],
)
def test_illegal_moves_say_why(cur: RunState, req: RunState, why: str) -> None:
    with pytest.raises(IllegalTransition, match=why):
        check_transition(cur, req)


@pytest.mark.parametrize(
    ("cur", "req"),
    [
        (RunState.pending, RunState.running),  # events may overtake each other
        (RunState.queued, RunState.succeeded),
        (RunState.accepted, RunState.rejected),
        (RunState.pending, RunState.expired),
        (RunState.waiting, RunState.skipped),
        (RunState.pending, RunState.skipped),
        (RunState.running, RunState.timed_out),
        (RunState.running, RunState.canceled),
        (RunState.dispatched, RunState.lost),
    ],
)
def test_forward_jumps_allowed(cur: RunState, req: RunState) -> None:
    assert check_transition(cur, req) is True


def test_unknown_state_names_are_refused() -> None:
    with pytest.raises(ValueError):
        check_transition("running", "exploded")
    with pytest.raises(ValueError):
        can_transition("nowhere", "running")


@given(st.lists(st.sampled_from(ALL), max_size=40))
def test_random_sequences_only_move_forward(requests: list[RunState]) -> None:
    state = RunState.pending
    history = [state]
    for req in requests:
        before = state
        try:
            changed = check_transition(state, req)
        except IllegalTransition:
            assert not expected_legal(state, req)
            continue
        assert changed == (req != before)
        state = req
        history.append(state)
        if before.is_final:
            assert state == before, "a final state changed"
    ranks = [len(ACTIVE) if s.is_final else ACTIVE.index(s) for s in history]
    assert ranks == sorted(ranks), f"moved backwards: {history}"
    assert sum(s.is_final for s in set(history)) <= 1, "more than one final state"


def test_a_confirm_after_the_result_and_a_result_after_a_timeout_are_late() -> None:
    assert is_late("succeeded", "dispatched") and is_late("delivered", "dispatched")
    assert is_late("timed_out", "failed")
    assert not is_late("queued", "delivered") and not is_late("running", "succeeded")
    assert not is_late(None, "pending")  # a run's first hop
