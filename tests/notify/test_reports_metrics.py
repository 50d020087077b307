"""The reports API (JSON and CSV) and /metrics, over the controller app in-process."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from sqlmodel import Session
from waiting import wait_until

from tme.controller.reports import percentile
from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run, utcnow
from tme.schemas import TaskCreate


def _finish(engine: Any, op: str, outcome: str, seconds: float, reason: str = "") -> None:
    target = {"site": "plant-x", "agent": "skid-a", "device": "tank1"}
    params = {"point": "level"} if op == "modbus.read" else {}
    body = TaskCreate.model_validate(
        {"name": f"{op} {outcome}", "op": op, "target": target, "params": params}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        start = utcnow() - timedelta(seconds=seconds)
        run_service.transition(session, run, "queued")
        run_service.transition(session, run, "running", at=start)
        run_service.transition(
            session, run, outcome, reason=reason or outcome, at=start + timedelta(seconds=seconds)
        )
        session.commit()


def _machine_task(name: str) -> TaskCreate:
    target = {"site": "plant-x", "agent": "skid-a"}
    return TaskCreate.model_validate({"name": name, "op": "noop", "target": target})


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0, 1.0, 2.0], 0.5) == 2.0
    assert percentile([float(i) for i in range(1, 101)], 0.95) == 95.0


def test_summary_groups_by_op_with_rates_and_durations(test_client, app_engine) -> None:
    _finish(app_engine, "modbus.read", "succeeded", 1.0)
    _finish(app_engine, "modbus.read", "succeeded", 3.0)
    _finish(app_engine, "modbus.read", "failed", 2.0, reason="modbus timeout")
    _finish(app_engine, "noop", "succeeded", 0.5)
    answer = test_client.get("/api/v1/reports/summary", params={"days": 7, "group_by": "op"})
    assert answer.status_code == 200, answer.text
    report = answer.json()
    groups = {g["key"]: g for g in report["groups"]}
    assert groups["modbus.read"]["runs"] == 3
    assert groups["modbus.read"]["success_rate"] == round(2 / 3, 4)
    assert groups["modbus.read"]["p50_s"] == 2.0
    assert groups["modbus.read"]["p95_s"] == 3.0
    assert groups["noop"]["success_rate"] == 1.0
    assert report["top_failure_reasons"] == [{"reason": "modbus timeout", "runs": 1}]
    assert sum(h["runs"] for h in report["busiest_hours"]) == 4


def test_success_rate_leaves_out_runs_that_never_ran_to_an_outcome(test_client, app_engine) -> None:
    # A branch not taken (skipped) and an operator's cancel are no failures: the rate
    # was 1/3 here, and a schedule whose overlapping slots were skipped sank towards 0.
    _finish(app_engine, "noop", "succeeded", 0.5)
    with Session(app_engine) as session:
        for outcome in ("skipped", "canceled"):
            task, _ = create_task(session, _machine_task(f"noop {outcome}"))
            run = session.get(Run, task.latest_run_id)
            assert run is not None
            run_service.transition(session, run, outcome, reason=outcome)
        create_task(session, _machine_task("noop never ran"))  # pending: not counted
        session.commit()
    answer = test_client.get("/api/v1/reports/summary", params={"group_by": "op"})
    assert answer.status_code == 200, answer.text
    noop = {g["key"]: g for g in answer.json()["groups"]}["noop"]
    assert (noop["runs"], noop["succeeded"], noop["failed"]) == (3, 1, 0)
    assert noop["success_rate"] == 1.0


def test_success_rate_is_none_without_a_success_or_failure(test_client, app_engine) -> None:
    with Session(app_engine) as session:
        task, _ = create_task(session, _machine_task("noop canceled"))
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        run_service.transition(session, run, "canceled", reason="canceled")
        session.commit()
    answer = test_client.get("/api/v1/reports/summary", params={"group_by": "op"})
    noop = {g["key"]: g for g in answer.json()["groups"]}["noop"]
    assert (noop["runs"], noop["success_rate"]) == (1, None)


def test_summary_csv_exports_the_same_rows(test_client, app_engine) -> None:
    _finish(app_engine, "noop", "succeeded", 0.5)
    answer = test_client.get("/api/v1/reports/summary.csv", params={"group_by": "site"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0][:3] == ["site", "runs", "succeeded"]
    assert rows[1][:3] == ["plant-x", "1", "1"]


def test_summary_refuses_a_backwards_period(test_client) -> None:
    answer = test_client.get(
        "/api/v1/reports/summary",
        params={"since": "2026-02-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
    )
    assert answer.status_code == 422


def test_metrics_counts_runs_by_state_and_queue_depth(test_client, app_engine) -> None:
    _finish(app_engine, "noop", "failed", 0.1)
    answer = test_client.get("/metrics")
    assert answer.status_code == 200
    text = answer.text
    assert 'tme_runs{state="failed"} 1.0' in text
    assert "tme_queue_depth" in text
    assert "tme_dispatch_latency_seconds_bucket" in text


def test_every_background_loop_of_the_controller_says_when_it_is_failing(app, test_client) -> None:
    """tme_loop_failing names the dispatcher, the scheduling pass, the notifier (and the
    pruner, with a retention): a notifier whose passes failed was not shown."""
    loops = app.state.metrics.process.loops
    assert {"dispatch", "scheduling", "notify"} <= set(loops)
    assert 'tme_loop_failing{loop="notify"} 0.0' in test_client.get("/metrics").text
    loops["notify"].failed(RuntimeError("the notifier's pass failed"))
    assert 'tme_loop_failing{loop="notify"} 1.0' in test_client.get("/metrics").text


def test_with_a_retention_the_pruner_says_when_it_is_failing(
    app_settings, app_engine, admin_token
) -> None:
    from fastapi.testclient import TestClient

    from tme.controller.app import create_app

    database = app_settings.database.model_copy(update={"retention_days": 30})
    app = create_app(app_settings.model_copy(update={"database": database}), engine=app_engine)
    with TestClient(app, headers={"Authorization": f"Bearer {admin_token}"}) as client:
        assert 'tme_loop_failing{loop="prune"} 0.0' in client.get("/metrics").text


def test_metrics_show_how_busy_sqlites_writer_is_and_how_creates_were_grouped(
    test_client,
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def samples() -> dict[str, float]:
        text = test_client.get("/metrics").text
        families = text_string_to_metric_families(text)
        return {s.name: s.value for family in families for s in family.samples}

    before = samples()
    body = {"name": "note the shift change", "op": "external"}
    assert test_client.post("/api/v1/tasks", json=body).status_code == 201
    after = samples()
    assert after["tme_api_creates_total"] == before["tme_api_creates_total"] + 1
    assert (
        after["tme_api_create_transactions_total"]
        >= before["tme_api_create_transactions_total"] + 1
    )
    # The create, with its audit row: a write transaction, held a while.
    assert after["tme_sqlite_writes_total"] >= before["tme_sqlite_writes_total"] + 1
    assert after["tme_sqlite_write_seconds_total"] > before["tme_sqlite_write_seconds_total"]
    assert after["tme_sqlite_write_wait_seconds_total"] >= 0
    assert after["tme_sqlite_writes_waiting"] == 0


def test_metrics_needs_a_token(app) -> None:
    from fastapi.testclient import TestClient

    with TestClient(app) as anonymous:
        assert anonymous.get("/metrics").status_code == 401


def test_metrics_need_a_grant_of_every_site(app, app_engine) -> None:
    """They count every site's runs and name every site's agents: a viewer of one site,
    who cannot list the others, is refused; one of all sites (a scraper) reads them."""
    from fastapi.testclient import TestClient

    from tme.controller.services.bootstrap import make_user_with_token

    one_site = make_user_with_token(app_engine, "site-a-viewer", "viewer", "site-a").token
    every_site = make_user_with_token(app_engine, "scraper", "viewer", "*").token
    with TestClient(app) as client:
        refused = client.get("/metrics", headers={"Authorization": f"Bearer {one_site}"})
        assert refused.status_code == 403
        assert "grant of all sites (yours: site-a)" in refused.json()["error"]["message"]
        read = client.get("/metrics", headers={"Authorization": f"Bearer {every_site}"})
        assert read.status_code == 200 and "tme_runs" in read.text


def test_metrics_observe_dispatch_latency_and_driver_errors_from_a_batch(app_engine) -> None:
    from tme.controller.event_apply import apply_messages
    from tme.controller.metrics import Metrics
    from tme.protocol import Event, Presence

    with Session(app_engine) as session:
        ids = []
        for i in range(3):
            task, _ = create_task(session, _machine_task(f"pump {i}"))
            ids.append(str(task.latest_run_id))
        session.commit()
    metrics = Metrics(app_engine)
    accepted = [Event(command_id=r, type="accepted", site="plant-x", agent="skid-a") for r in ids]
    failed = Event(command_id=ids[0], type="failed", site="plant-x", agent="skid-a")
    batch: list[Event | Presence] = [
        *accepted,
        accepted[0],  # redelivered in the same batch: observed once
        Event(command_id="no-such-run", type="accepted", site="plant-x", agent="skid-a"),
        Presence(site="plant-x", agent="skid-a", state="online"),
        failed,
    ]
    with Session(app_engine) as session:
        applied = apply_messages(session, batch)  # as the event consumer does, then tells
        session.commit()
    applied.seconds = 0.004  # the consumer's time for the transaction
    metrics.on_batch(batch, applied)
    registry = metrics.registry
    assert registry.get_sample_value("tme_dispatch_latency_seconds_count") == 3
    labels = {"site": "plant-x", "source": failed.source}
    assert registry.get_sample_value("tme_driver_errors_total", labels) == 1
    # one transaction of seven messages; one run made final (the others only accepted)
    assert registry.get_sample_value("tme_event_apply_seconds_count") == 1
    assert registry.get_sample_value("tme_event_apply_seconds_sum") == pytest.approx(0.004)
    assert registry.get_sample_value("tme_events_applied_total") == len(batch)
    assert registry.get_sample_value("tme_run_seconds_count") == 1
    assert 0 <= (registry.get_sample_value("tme_run_seconds_sum") or -1) < 60


def test_metrics_show_where_a_runs_time_went_in_the_running_controller(app, test_client) -> None:
    """A created task's command confirmed by the broker, then its result applied: the
    confirm, the apply and the whole run each show in /metrics."""
    from tme.protocol import EVENTS_EXCHANGE, Event

    def sample(name: str) -> float:
        for line in test_client.get("/metrics").text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return 0.0

    created = test_client.post("/api/v1/tasks", json=_machine_task("pump").model_dump())
    assert created.status_code == 201, created.text
    run_id = created.json()["latest_run_id"]
    wait_until(lambda: sample("tme_dispatch_confirmed_total") == 1, what="the confirm counted")
    assert sample("tme_dispatch_confirm_seconds_count") == 1
    assert sample("tme_run_seconds_count") == 0
    done = Event(command_id=run_id, type="succeeded", site="plant-x", agent="skid-a")
    app.state.runtime.bus.publish(EVENTS_EXCHANGE, "plant-x.skid-a.succeeded", done.to_json())
    wait_until(lambda: sample("tme_run_seconds_count") == 1, what="the run's time observed")
    assert sample("tme_event_apply_seconds_count") >= 1
    assert sample("tme_events_applied_total") >= 1


def test_a_batch_delivered_again_is_not_counted_again(app_engine) -> None:
    """RabbitMQ delivers at least once: a batch redelivered (the controller stopped
    before its ack) moves no run, and counts no second driver error or latency."""
    from tme.controller.event_apply import apply_messages
    from tme.controller.metrics import Metrics
    from tme.protocol import Event, Presence

    with Session(app_engine) as session:
        task, _ = create_task(session, _machine_task("pump"))
        run_id = str(task.latest_run_id)
        session.commit()
    metrics = Metrics(app_engine)
    batch: list[Event | Presence] = [
        Event(command_id=run_id, type=kind, site="plant-x", agent="skid-a")
        for kind in ("accepted", "failed")
    ]
    for _delivery in range(2):
        with Session(app_engine) as session:
            applied = apply_messages(session, batch)
            session.commit()
        metrics.on_batch(batch, applied)
    registry = metrics.registry
    assert registry.get_sample_value("tme_dispatch_latency_seconds_count") == 1
    labels = {"site": "plant-x", "source": "agent"}
    assert registry.get_sample_value("tme_driver_errors_total", labels) == 1
    assert registry.get_sample_value("tme_run_seconds_count") == 1  # its run ended once
    assert registry.get_sample_value("tme_event_apply_seconds_count") == 2  # applied twice


def test_groups_by_task_come_in_task_id_order(test_client, app_engine) -> None:
    """Task 10 after task 9, not between 1 and 2 (the key "10 name" sorts as text)."""
    for _ in range(10):
        _finish(app_engine, "noop", "succeeded", 0.1)
    answer = test_client.get("/api/v1/reports/summary", params={"group_by": "task"})
    ids = [int(group["key"].split(" ", 1)[0]) for group in answer.json()["groups"]]
    assert len(ids) == 10 and ids == sorted(ids)


def test_summary_since_with_days_is_that_many_days_from_since(test_client) -> None:
    """`days` was ignored beside `since`: the period ran to now, whatever days said."""
    answer = test_client.get(
        "/api/v1/reports/summary", params={"since": "2026-12-01T00:00:00Z", "days": 3}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["since"], body["until"]) == ("2026-12-01T00:00:00Z", "2026-12-04T00:00:00Z")
    ended = test_client.get(
        "/api/v1/reports/summary", params={"until": "2026-12-04T00:00:00Z", "days": 2}
    )
    assert ended.json()["since"] == "2026-12-02T00:00:00Z"


@pytest.mark.parametrize("route", ["/api/v1/reports/summary", "/api/v1/reports/summary.csv"])
def test_days_beside_since_and_until_is_refused_naming_days(test_client, route: str) -> None:
    """It was ignored: the report covered since..until, whatever days said."""
    period = {"since": "2026-12-01T00:00:00Z", "until": "2026-12-08T00:00:00Z", "days": 1}
    answer = test_client.get(route, params=period)
    assert answer.status_code == 422, answer.text
    assert [d["field"] for d in answer.json()["error"]["details"]] == ["days"]


def test_a_future_since_alone_says_the_period_would_end_now(test_client) -> None:
    answer = test_client.get("/api/v1/reports/summary", params={"since": "2999-01-01T00:00:00Z"})
    assert answer.status_code == 422
    assert "since must be before now (no until was given)" in answer.json()["error"]["message"]
