"""The gateway journal takes a batch of commands in one synced write and hands the
dispatcher only the entries it has something to do with."""

from __future__ import annotations

import time
from pathlib import Path

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
