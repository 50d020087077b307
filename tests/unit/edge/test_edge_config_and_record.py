"""Agent config validation, the agent's command record and the gateway's journal."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from commands import make_command

from tme.agents.agent_config import load_agent_config, parse_agent_config
from tme.agents.command_record import CommandRecord
from tme.agents.journal import Journal
from tme.errors import ConfigError
from tme.mqtt import parse_mqtt_url
from tme.protocol import Command, Event


def command(**overrides: object) -> Command:
    return make_command(**{"timeout_s": 5, **overrides})  # type: ignore[arg-type]


def test_config_error_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_agent_config({"site": "s", "agent": "a", "worker_count": 0})
    assert info.value.key == "worker_count"
    with pytest.raises(ConfigError) as info:
        parse_agent_config({"site": "s", "agent": "a", "devices": {"p": {"connection": {}}}})
    assert info.value.key == "devices.p.driver"
    with pytest.raises(ConfigError) as info:
        parse_agent_config({"site": "s/x", "agent": "a"})
    assert info.value.key == "site"


def test_record_keep_is_read_and_checked() -> None:
    base = {"site": "s", "agent": "a"}
    assert parse_agent_config(base).record_keep_s == 24 * 3600
    assert parse_agent_config({**base, "record_keep_s": 3600}).record_keep_s == 3600.0
    assert parse_agent_config({**base, "record_keep_s": 0}).record_keep_s == 0.0
    for bad, said in ((-1, "between 0 and"), ("1d", "expected a number"), (4e7, "between 0")):
        with pytest.raises(ConfigError) as info:
            parse_agent_config({**base, "record_keep_s": bad})
        assert info.value.key == "record_keep_s" and said in info.value.message


def test_config_reports_every_problem_with_its_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(
            {
                "site": "s",
                "agent": "a",
                "allow_shell": "yes",
                "mqtt": {"url": "http://broker", "protocol": "4"},
                "devices": {"p": {"driver": "modbus_tcp", "unit": 300, "colour": "red"}},
                "workers": 2,
            }
        )
    message = info.value.message
    for key in (
        "allow_shell",
        "mqtt.url",
        "mqtt.protocol",
        "devices.p.unit",
        "devices.p.colour",
        "workers",
    ):
        assert f"{key}: " in message, key
    assert info.value.key == "mqtt.url"  # the first problem, in the order of the fields


def test_config_takes_the_mqtt_shorthand_and_a_numeric_protocol() -> None:
    config = parse_agent_config({"site": "s", "agent": "a", "mqtt": "mqtt://h:1884"})
    assert config.mqtt.url == "mqtt://h:1884" and config.mqtt.protocol == "3.1.1"
    config = parse_agent_config({"site": "s", "agent": "a", "mqtt": {"protocol": 5}})
    assert config.mqtt.protocol == "5"
    assert "password" not in repr(parse_agent_config({"site": "s", "agent": "a"}).mqtt)


def test_config_error_tracking_section() -> None:
    config = parse_agent_config(
        {
            "site": "s",
            "agent": "a",
            "error_tracking": {"enabled": True, "dsn": "https://k@errors.example/1"},
        }
    )
    assert config.error_tracking.enabled and config.error_tracking.sample_rate == 1.0
    assert "errors.example" not in repr(config)  # the DSN holds a key
    assert not parse_agent_config({"site": "s", "agent": "a"}).error_tracking.enabled
    with pytest.raises(ConfigError) as info:
        parse_agent_config(
            {
                "site": "s",
                "agent": "a",
                "error_tracking": {"enabled": True, "sample_rate": 2, "colour": "red"},
            }
        )
    for key in ("error_tracking.sample_rate", "error_tracking.dsn", "error_tracking.colour"):
        assert f"{key}: " in info.value.message, key


def test_an_agent_config_with_a_key_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("site: s1\nagent: a1\nmqtt: mqtt://localhost\nallow_shell: false\n"
                    "devices: {}\nallow_shell: true\n")  # fmt: skip
    with pytest.raises(ConfigError, match=r"line 6, column 1: found key 'allow_shell' twice"):
        load_agent_config(path)


def test_a_typo_in_an_agent_config_key_names_the_key_meant(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("site: s1\nagent: a1\nmqtt: mqtt://localhost\nallow_shel: true\ndevices: {}\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(path)
    assert info.value.message.endswith("allow_shel: unknown field; did you mean 'allow_shell'?")


def test_config_file_resolves_relative_paths(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "site: s1\nagent: a1\nmqtt: mqtt://u:p@localhost:1884\nstate_dir: st\n"
        "devices:\n  pump1: {driver: modbus_tcp, connection: {port: 5020}, profile: pump.yaml}\n"
    )
    config = load_agent_config(path)
    assert config.state_dir == tmp_path / "st"
    assert config.devices["pump1"].profile == tmp_path / "pump.yaml"
    assert config.mqtt.url == "mqtt://u:p@localhost:1884"


def test_mqtt_url_carries_credentials() -> None:
    endpoint = parse_mqtt_url("mqtt://user:s%40cret@host:1884")
    assert (endpoint.host, endpoint.port, endpoint.username, endpoint.password) == (
        "host",
        1884,
        "user",
        "s@cret",
    )
    with pytest.raises(ConfigError):
        parse_mqtt_url("http://host")


def test_record_dedups_and_keeps_the_final_event(tmp_path: Path) -> None:
    record = CommandRecord(tmp_path / "r.sqlite3")
    cmd = command()
    assert record.add(cmd) is True
    assert record.add(cmd) is False
    record.mark_started(cmd.id)
    assert [c.id for c in record.unfinished("started")] == [cmd.id]
    final = Event(command_id=cmd.id, type="succeeded", site="s1", agent="a1", result={"x": 1})
    record.finish(final)
    record.close()
    reopened = CommandRecord(tmp_path / "r.sqlite3")  # survives a restart
    entry = reopened.get(cmd.id)
    assert entry is not None and entry.stage == "final" and entry.final_event == final
    assert reopened.unfinished("started") == []
    reopened.close()


@pytest.mark.parametrize("kind", ["record", "journal"])
def test_the_prune_reads_only_what_it_deletes(tmp_path: Path, kind: str) -> None:
    """An agent's record keeps two weeks of commands, a gateway's journal a week of its
    site's: the hourly prune searches an index of the closed ones by time instead of
    scanning them all on the agent's event loop (0.2 s for 600,000 rows here)."""
    from tme.agents import command_record, journal

    params: Any
    if kind == "record":
        store: Any = CommandRecord(tmp_path / "r.sqlite3")
        db, sql = store._db, command_record.PRUNE
        params = {"kept": 0.0, "expired": 0.0, "undated": 0.0}
    else:
        store = Journal(tmp_path / "j.sqlite3")
        db, sql, params = store._db, journal.PRUNE, {"kept": 0.0, "expired": 0.0}
    plan = " ".join(row[-1] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))
    store.close()
    assert "USING INDEX" in plan and "SCAN" not in plan, plan


DAY = 24 * 3600.0


def _entry(
    record: CommandRecord, stage: str, answered_ago: float, not_after_in: float | None
) -> str:
    """A command in the record at `stage`, its last change `answered_ago` seconds ago and
    its not_after `not_after_in` seconds from now (None: undated, an older agent's)."""
    cmd = command()
    record.add(cmd)
    now = time.time()
    not_after = None if not_after_in is None else now + not_after_in
    record._db.execute(
        "UPDATE commands SET stage = ?, updated = ?, not_after = ? WHERE id = ?",
        (stage, now - answered_ago, not_after, cmd.id),
    )
    return cmd.id


def test_the_prune_deletes_only_commands_that_can_no_longer_run(tmp_path: Path) -> None:
    """Past its keep time, a final command goes once its not_after has passed by an hour
    (a redelivery is then refused as expired, record or none); one that could still be
    delivered and run stays, whatever its age, as does an unfinished one."""
    record = CommandRecord(tmp_path / "r.sqlite3")
    gone = _entry(record, "final", 2 * DAY, -2 * DAY)
    within_margin = _entry(record, "final", 2 * DAY, -0.5 * 3600)
    still_deliverable = _entry(record, "final", 2 * DAY, 5 * DAY)  # a long queue timeout
    recent = _entry(record, "final", 3600, -2 * 3600)
    unfinished = _entry(record, "started", 20 * DAY, -20 * DAY)
    undated_young = _entry(record, "final", 13 * DAY, None)
    undated_old = _entry(record, "final", 15 * DAY, None)
    assert record.prune(keep_s=DAY) == 2
    kept = {row[0] for row in record._db.execute("SELECT id FROM commands")}
    assert kept == {within_margin, still_deliverable, recent, unfinished, undated_young}
    assert {gone, undated_old}.isdisjoint(kept)
    assert record.prune(keep_s=0) == 1  # the recent one, past its not_after by two hours
    assert recent not in {row[0] for row in record._db.execute("SELECT id FROM commands")}
    record.close()


def test_a_record_of_an_older_agent_gains_the_not_after_of_new_commands(tmp_path: Path) -> None:
    """A record file written before entries kept their not_after opens with its entries,
    which are kept as long as before (14 days); a new command's not_after is kept."""
    path = tmp_path / "r.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE commands (id TEXT PRIMARY KEY, stage TEXT NOT NULL,"
            " command TEXT NOT NULL, final_event TEXT, updated REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO commands VALUES ('old', 'final', '{}', '{}', ?)", (time.time() - 2 * DAY,)
        )
    db.close()
    record = CommandRecord(path)
    cmd = command()
    assert record.add(cmd) is True
    stored = dict(record._db.execute("SELECT id, not_after FROM commands").fetchall())
    assert stored == {"old": None, cmd.id: cmd.not_after.timestamp()}
    assert record.prune(keep_s=0) == 0  # the old entry is undated and two days old
    record.close()


def test_the_journal_keeps_a_closed_command_until_it_can_no_longer_run(tmp_path: Path) -> None:
    """A closed entry goes once closed for longer than the journal's keep time and past
    its not_after by the margin (journaled again then, it is expired, not sent); an open
    one stays, whatever its age."""
    journal = Journal(tmp_path / "j.sqlite3", keep_s=DAY)
    short, long_queued, still_open = command(), command(), command()
    for cmd in (short, long_queued, still_open):
        journal.add(cmd, cmd.to_json())
    journal.close_entry(short.id, "done")
    journal.close_entry(long_queued.id, "expired")
    journal._update(
        "UPDATE journal SET not_after = ? WHERE id = ?", (time.time() + 5 * DAY, long_queued.id)
    )
    two_days_on = time.time() + 2 * DAY
    assert journal.prune(now=two_days_on) == 1
    assert journal.get_state(short.id) is None
    assert journal.get_state(long_queued.id) == "expired"
    assert journal.get_state(still_open.id) == "pending"
    assert journal.prune(now=time.time() + 0.5 * DAY) == 0  # within its keep time
    journal.close()


class _SyncSpy:
    """The record's connection, noting the sync mode each write commits under."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.writes: list[tuple[str, int]] = []

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.startswith(("INSERT", "UPDATE")):
            mode = int(self.db.execute("PRAGMA synchronous").fetchone()[0])
            self.writes.append((sql.split()[0], mode))
        return self.db.execute(sql, *args)

    def close(self) -> None:
        self.db.close()


def test_record_syncs_before_the_machine_is_touched_not_on_receipt(tmp_path: Path) -> None:
    """Receipt is written without a sync of its own (NORMAL = 1); the started and final
    stages are synced (FULL = 2), which carries the receipt to disk with them."""
    record = CommandRecord(tmp_path / "r.sqlite3")
    spy = _SyncSpy(record._db)
    record._db = spy  # type: ignore[assignment]
    cmd = command()
    record.add(cmd)
    record.mark_started(cmd.id)
    record.finish(Event(command_id=cmd.id, type="succeeded", site="s1", agent="a1"))
    assert spy.writes == [("INSERT", 1), ("UPDATE", 2), ("UPDATE", 2)]
    record.close()


def test_journal_moves_entries_and_dedups(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    cmd = command()
    assert journal.add(cmd, cmd.to_json()) is True
    assert journal.add(cmd, cmd.to_json()) is False
    (entry,) = journal.open_entries()
    assert (entry.state, entry.delivered, entry.agent) == ("pending", False, "a1")
    journal.mark_sent(cmd.id)
    journal.mark_delivered(cmd.id)
    (entry,) = journal.open_entries()
    assert entry.state == "sent" and entry.delivered and entry.sent_at is not None
    journal.close_entry(cmd.id, "done")
    journal.mark_sent(cmd.id)  # a closed entry is never reopened
    assert journal.open_entries() == [] and journal.get_state(cmd.id) == "done"
    journal.close()


def test_journal_closes_an_entry_with_one_write_however_many_events(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    cmd = command()
    journal.add(cmd, cmd.to_json())
    writes: list[str] = []
    journal._db.set_trace_callback(writes.append)
    for _event in ("accepted", "started", "succeeded"):
        journal.close_entry(cmd.id, "done")
    assert sum(1 for w in writes if w.startswith("UPDATE")) == 1
    journal._db.set_trace_callback(None)
    journal.prune(now=cmd.not_after.timestamp() + 2 * journal.keep_s)  # gone; journaled
    # again, it must close again
    assert journal.add(cmd, cmd.to_json()) is True
    journal.close_entry(cmd.id, "done")
    assert journal.get_state(cmd.id) == "done"
    journal.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, 3),  # the file's
        ({"WORKER_COUNT": "2"}, 2),
        ({"WORKER_COUNT": "2", "TME_AGENT__WORKER_COUNT": "5"}, 5),
    ],
)
def test_tme_agent_takes_worker_count_from_its_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], expected: int
) -> None:
    # configuration.md: WORKER_COUNT (and TME_AGENT__WORKER_COUNT over it) sets
    # agent.worker_count; `tme agent` ran with its file's value whatever they said.
    from typer.testing import CliRunner

    from tme.agents import agent as agent_module
    from tme.agents import agent_config, agent_logging
    from tme.cli.main import app

    path = tmp_path / "agent.yaml"
    path.write_text("site: s1\nagent: a1\nworker_count: 3\n")
    built: list[int] = []

    class Built(Exception):
        pass

    def capture(config: object) -> None:
        built.append(config.worker_count)  # type: ignore[attr-defined]
        raise Built

    monkeypatch.setattr(agent_module, "DeviceAgent", capture)
    # no process-wide error hooks or logging set-up from inside the test process
    monkeypatch.setattr(agent_config, "track_errors", lambda config: False)
    monkeypatch.setattr(agent_logging, "setup_agent_logging", lambda verbose=False: None)
    for name in ("WORKER_COUNT", "TME_AGENT__WORKER_COUNT"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(app, ["agent", "--config", str(path)], env=env)
    assert isinstance(result.exception, Built), result.output
    assert built == [expected]


def test_a_bad_worker_count_variable_names_itself(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("site: s1\nagent: a1\n")
    with pytest.raises(ConfigError, match=r"got 'many' from env WORKER_COUNT"):
        load_agent_config(path, {"WORKER_COUNT": "many"})
    assert load_agent_config(path, {}).worker_count == 4
    assert load_agent_config(path).worker_count == 4  # lock, unlock: the file alone


@pytest.mark.parametrize("port", ["notaport", "99999"])
def test_an_mqtt_url_whose_port_cannot_be_read_is_a_config_error(port: str) -> None:
    # An agent's config, or `tme gateway --mqtt`, with such a URL ended in a ValueError's
    # traceback; the error names the key and hides the password, as the settings' do.
    url = f"mqtt://u:s3cret@h:{port}"
    with pytest.raises(ConfigError) as info:
        parse_agent_config({"site": "s", "agent": "a", "mqtt": {"url": url}})
    assert "mqtt.url" in info.value.message and f"h:{port}" in info.value.message
    assert "s3cret" not in info.value.message
    with pytest.raises(ConfigError, match="port") as direct:
        parse_mqtt_url(url)
    assert "s3cret" not in direct.value.message
    with pytest.raises(ConfigError) as other:
        parse_mqtt_url("htp://u:s3cret@h:1883")
    assert "s3cret" not in other.value.message
