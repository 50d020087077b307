"""The device agent against the real Mosquitto: ordering, dedup, expiry, timeouts, presence."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from commands import make_command
from edge_helpers import send

from tme.protocol import Presence, evt_topic, state_topic, utcnow

pytestmark = pytest.mark.external_service


def test_command_events_arrive_in_order(names, agent_factory, watcher_factory) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent)
    cmd = make_command(site, agent, "sleep", params={"seconds": 0.05})
    send(runner.agent.link, cmd)
    events = watcher.wait_final(cmd.id)
    assert [e.type for e in events] == ["accepted", "started", "succeeded"]
    assert events[-1].result is not None and "slept_s" in events[-1].result


def test_redelivered_command_runs_once(names, agent_factory, watcher_factory, tmp_path) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent, allow_shell=True)
    marker = tmp_path / "runs.txt"
    cmd = make_command(site, agent, "shell", cmd=f"echo run >> {marker}")
    send(runner.agent.link, cmd)
    first = watcher.wait_final(cmd.id)
    send(runner.agent.link, cmd)  # a redelivery: same command id
    events = watcher.wait_final(cmd.id, count=2)
    finals = [e for e in events if e.type == "succeeded"]
    assert finals[0].id == finals[1].id  # the second answer is the recorded event
    assert marker.read_text() == "run\n"
    assert [e.type for e in events].count("started") == 1 and first[-1] == finals[0]


def test_record_survives_an_agent_restart(names, agent_factory, watcher_factory, tmp_path):
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    marker = tmp_path / "runs.txt"
    cmd = make_command(site, agent, "shell", cmd=f"echo run >> {marker}")
    runner = agent_factory(site, agent, allow_shell=True)
    send(runner.agent.link, cmd)
    watcher.wait_final(cmd.id)
    runner.stop()
    runner = agent_factory(site, agent, allow_shell=True)
    send(runner.agent.link, cmd)
    watcher.wait_final(cmd.id, count=2)
    assert marker.read_text() == "run\n"


def test_expired_command_never_runs(names, agent_factory, watcher_factory, tmp_path) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent, allow_shell=True)
    marker = tmp_path / "ran"
    cmd = make_command(
        site, agent, "shell", cmd=f"touch {marker}", not_after=utcnow() - timedelta(seconds=1)
    )
    send(runner.agent.link, cmd)
    events = watcher.wait_final(cmd.id)
    assert [e.type for e in events] == ["expired"] and events[0].not_started
    assert not marker.exists()


def test_timeout_is_enforced_and_agent_keeps_serving(names, agent_factory, watcher_factory):
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent)
    slow = make_command(site, agent, "sleep", params={"seconds": 30}, timeout_s=0.3)
    send(runner.agent.link, slow)
    events = watcher.wait_final(slow.id)
    assert events[-1].type == "timed_out" and "0.3" in events[-1].reason
    after = make_command(site, agent, "noop")
    send(runner.agent.link, after)
    assert watcher.wait_final(after.id)[-1].type == "succeeded"


def test_failure_reports_reason_and_agent_keeps_serving(names, agent_factory, watcher_factory):
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent)
    bad = make_command(site, agent, "sleep", params={"seconds": -1})
    send(runner.agent.link, bad)
    assert watcher.wait_final(bad.id)[-1].type == "failed"
    assert "non-negative" in watcher.events(bad.id)[-1].reason
    ok = make_command(site, agent, "noop")
    send(runner.agent.link, ok)
    assert watcher.wait_final(ok.id)[-1].type == "succeeded"


def test_shell_refused_unless_allowed(names, agent_factory, watcher_factory) -> None:
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent)
    cmd = make_command(site, agent, "shell", cmd="true")
    send(runner.agent.link, cmd)
    (event,) = watcher.wait_final(cmd.id)
    assert event.type == "rejected" and "allow_shell" in event.reason


def test_malformed_payloads_dropped_and_agent_keeps_going(names, agent_factory, watcher_factory):
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent)
    topic = f"tme/v1/{site}/{agent}/cmd"
    for junk in (b"\xff\xfe", b"{}", b'{"kind": "command", "v": 99}', b"[1,2]", b"null"):
        assert runner.agent.link.publish_wait(topic, junk, 10)
    other = make_command(site, "someone-else")
    assert runner.agent.link.publish_wait(topic, other.to_json(), 10)
    cmd = make_command(site, agent, "noop")
    send(runner.agent.link, cmd)
    assert watcher.wait_final(cmd.id)[-1].type == "succeeded"
    assert watcher.events(other.id) == []


def test_presence_online_then_will_on_a_killed_agent(names, mqtt_url, watcher_factory, tmp_path):
    site, agent = names
    watcher = watcher_factory([state_topic(site, agent)])
    config = tmp_path / "agent.yaml"
    config.write_text(f"site: {site}\nagent: {agent}\nmqtt: {mqtt_url}\nstate_dir: state\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "tme.cli.main", "agent", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def states() -> list[str]:
            return [m.state for m in watcher.messages if isinstance(m, Presence)]

        watcher.wait_for(lambda: "online" in states(), timeout=30)
        os.kill(process.pid, signal.SIGKILL)  # no DISCONNECT: the broker sends the will
        process.wait(10)
        watcher.wait_for(lambda: states()[-1:] == ["offline"], timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_graceful_stop_publishes_offline(names, agent_factory, watcher_factory) -> None:
    site, agent = names
    watcher = watcher_factory([state_topic(site, agent)])
    runner = agent_factory(site, agent)
    watcher.wait_for(lambda: any(getattr(m, "state", "") == "online" for m in watcher.messages))
    runner.stop()
    watcher.wait_for(lambda: getattr(watcher.messages[-1], "state", "") == "offline")


def test_a_running_agent_prunes_its_record(names, agent_factory, tmp_path, monkeypatch) -> None:
    """Final records past their keep time go while the agent runs, not only at start."""
    import sqlite3

    from waiting import wait_until

    from tme.agents import agent as agent_module

    monkeypatch.setattr(agent_module, "PRUNE_EVERY_S", 0.05)
    site, agent = names
    runner = agent_factory(site, agent)
    path = runner.agent.config.state_dir / agent_module.RECORD_FILE
    with sqlite3.connect(path) as db:  # an old final record, as if from two weeks ago
        db.execute(
            "INSERT INTO commands (id, stage, command, final_event, updated)"
            " VALUES ('old', 'final', '{}', '{}', 0)"
        )

    def kept() -> int:
        with sqlite3.connect(path) as db:
            return int(db.execute("SELECT count(*) FROM commands WHERE id = 'old'").fetchone()[0])

    wait_until(lambda: kept() == 0, what="the old record pruned")


def test_an_agent_keeps_answered_commands_as_long_as_its_record_keep_s(
    names, agent_factory, monkeypatch
) -> None:
    """With `record_keep_s: 0` an answered command goes at the next prune once it can no
    longer run (its not_after past by the margin), not two weeks later; one that could
    still be delivered stays."""
    import sqlite3
    import time

    from waiting import wait_until

    from tme.agents import agent as agent_module

    monkeypatch.setattr(agent_module, "PRUNE_EVERY_S", 0.05)
    site, agent = names
    runner = agent_factory(site, agent, record_keep_s=0)
    path = runner.agent.config.state_dir / agent_module.RECORD_FILE
    now = time.time()
    with sqlite3.connect(path) as db:  # answered a minute ago: expired two hours ago, or not yet
        db.executemany(
            "INSERT INTO commands (id, stage, command, final_event, updated, not_after)"
            " VALUES (?, 'final', '{}', '{}', ?, ?)",
            [("expired", now - 60, now - 7200), ("deliverable", now - 60, now + 300)],
        )
    db.close()

    def kept() -> set[str]:
        with sqlite3.connect(path) as db:
            ids = {row[0] for row in db.execute("SELECT id FROM commands")}
        db.close()
        return ids

    wait_until(lambda: "expired" not in kept(), what="the expired command pruned")
    assert "deliverable" in kept()


def test_a_command_waiting_for_a_worker_runs_after_a_restart(
    names, agent_factory, watcher_factory, monkeypatch
) -> None:
    """B is accepted but waits for the only worker when the agent stops; the next
    process runs it without waiting for it to be offered again."""
    from tme.agents import agent as agent_module

    monkeypatch.setattr(agent_module, "DRAIN_TIMEOUT_S", 0.2)  # A is cut off, not awaited
    site, agent = names
    watcher = watcher_factory([evt_topic(site, agent)])
    runner = agent_factory(site, agent, worker_count=1)
    running = make_command(site, agent, "sleep", params={"seconds": 60}, timeout_s=120)
    waiting = make_command(site, agent, "noop")
    send(runner.agent.link, running)
    watcher.wait_for(lambda: any(e.type == "started" for e in watcher.events(running.id)))
    send(runner.agent.link, waiting)
    watcher.wait_for(lambda: any(e.type == "accepted" for e in watcher.events(waiting.id)))
    runner.stop()
    agent_factory(site, agent, worker_count=1)  # same state_dir; nothing is sent again

    def types(command_id: str) -> list[str]:
        return sorted(e.type for e in watcher.events(command_id))

    # Events published before the link connected may arrive after later ones (paho
    # re-sends its queue only after CONNACK): wait for all of them, in any order.
    watcher.wait_for(lambda: types(waiting.id) == ["accepted", "accepted", "started", "succeeded"])
    watcher.wait_for(lambda: "failed" in types(running.id))
    (cut_off,) = [e for e in watcher.events(running.id) if e.type == "failed"]
    assert "outcome unknown" in cut_off.reason
