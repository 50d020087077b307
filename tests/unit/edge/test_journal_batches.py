"""The gateway journal takes a batch of commands in one synced write and hands the
dispatcher only the entries it has something to do with."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from tme.agents.journal import Journal
from tme.protocol import Command, utcnow


def _command(agent: str = "a1") -> Command:
    return Command(site="s1", agent=agent, op="noop", timeout_s=5, not_after=utcnow(), task_id=1)


def test_a_batch_is_journaled_at_once_and_redeliveries_are_told_apart(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    first, second = _command(), _command("a2")
    assert journal.add_many([(first, first.to_json()), (second, second.to_json())]) == [True, True]
    again = [(first, first.to_json()), (_command(), b"{}"), (first, first.to_json())]
    assert journal.add_many(again) == [False, True, False]
    assert len(journal.open_entries()) == 3
    journal.close()
    reopened = Journal(tmp_path / "j.sqlite3")  # what was journaled survives a restart
    assert {e.id for e in reopened.open_entries()} >= {first.id, second.id}
    reopened.close()


def test_a_full_disk_is_the_error_a_failed_write_raises_and_the_next_write_works(
    tmp_path: Path,
) -> None:
    """SQLite rolls a transaction back itself when the disk is full; the journal's own
    ROLLBACK then failed ("no transaction is active") and hid the cause from the log."""
    journal = Journal(tmp_path / "j.sqlite3")
    journal._db.execute("PRAGMA max_page_count = 8")  # the file may grow no further
    big = [(_command(), b"x" * 4000) for _ in range(8)]
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"):
        journal.add_many(big)
    small = _command()
    assert journal.add_many([(small, small.to_json())]) == [True]
    assert [e.id for e in journal.open_entries()] == [small.id]
    journal.close()


def test_only_entries_needing_action_are_read(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    pending, quiet, undelivered, other_agent = (_command(), _command(), _command(), _command("a2"))
    for cmd in (pending, quiet, undelivered, other_agent):
        journal.add(cmd, cmd.to_json())
    journal.mark_sent_many([quiet.id, undelivered.id, other_agent.id])
    journal.mark_delivered(quiet.id)
    journal.mark_delivered(other_agent.id)
    now = time.time()

    def ids(**kw: object) -> set[str]:
        found = journal.entries_needing_action(now - 30, **kw)  # type: ignore[arg-type]
        return {e.id for e in found}

    # sent and delivered recently: nothing to do with it
    assert ids(resend_agents=set(), resend_all=False) == {pending.id, undelivered.id}
    assert ids(resend_agents={"a2"}, resend_all=False) == {
        pending.id,
        undelivered.id,
        other_agent.id,
    }
    assert len(ids(resend_agents=set(), resend_all=True)) == 4
    late = journal.entries_needing_action(now + 1, set(), False)  # sent before: due again
    assert {e.id for e in late} == {pending.id, quiet.id, undelivered.id, other_agent.id}
    journal.close()


def test_the_dispatchers_queries_read_the_open_entries_not_every_entry(tmp_path: Path) -> None:
    """The dispatcher asks at every wake; closed entries stay for a week. Its queries
    must use the open entries' index (SQLite plans), not read every entry kept."""
    journal = Journal(tmp_path / "j.sqlite3")
    seen: list[str] = []
    journal._db.set_trace_callback(seen.append)
    journal.entries_needing_action(time.time(), {"a1", "a2"}, resend_all=False)
    journal.entries_needing_action(time.time(), set(), resend_all=False)
    journal.entries_needing_action(time.time(), set(), resend_all=True)
    journal._db.set_trace_callback(None)
    selects = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3
    for statement in selects:
        plan = journal._db.execute(f"EXPLAIN QUERY PLAN {statement}").fetchall()
        assert not [row for row in plan if str(row[-1]).startswith("SCAN")], (statement, plan)
    journal.close()


class _Publisher:
    def submit(self, item: object) -> None:
        pass


def test_a_running_gateway_prunes_its_journal(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not only at start: closed entries past the keep time go while the gateway runs,
    and open ones stay."""
    from waiting import wait_until

    from tme.agents import command_dispatch

    monkeypatch.setattr(command_dispatch, "PRUNE_EVERY_S", 0.0)
    monkeypatch.setattr(command_dispatch, "TICK_S", 0.02)
    journal = Journal(tmp_path / "j.sqlite3")
    closed, still_open = _command(), _command()
    for cmd in (closed, still_open):
        journal.add(cmd, cmd.to_json())
    journal.close_entry(closed.id, "done")
    # closed long ago, and past its not_after (journaled again, it would be expired)
    journal._update("UPDATE journal SET updated = 0, not_after = 0 WHERE id = ?", (closed.id,))
    dispatcher = command_dispatch.CommandDispatcher(
        "s1",
        journal,
        _Publisher(),
        lambda _topic, _payload: None,  # type: ignore[arg-type]
    )
    dispatcher.start()
    try:
        wait_until(lambda: journal.get_state(closed.id) is None, what="the old entry pruned")
        assert journal.get_state(still_open.id) in ("pending", "sent")
    finally:
        dispatcher.stop()
        journal.close()


def test_an_answer_that_overtakes_its_command_does_not_keep_it_open(tmp_path: Path) -> None:
    """A cancel's answer may arrive before its target is journaled: closing an id with
    no entry must not be remembered, or the entry journaled later stays open (and is
    offered to its agent every resend_after_s)."""
    journal = Journal(tmp_path / "j.sqlite3")
    cmd = _command()
    journal.close_entry(cmd.id, "done")  # the answer first: nothing to close yet
    assert journal.add(cmd, cmd.to_json()) is True
    journal.close_entry(cmd.id, "done")  # its events again, once it is journaled
    assert journal.get_state(cmd.id) == "done"
    journal.close()
