"""/api/v1/rollouts: preview, create, list, show and cancel over HTTP, with the 4xx a
bad request gets, the permissions of each role and the scope of a grant of sites."""

from __future__ import annotations

from itertools import product
from typing import Any

import pytest
from api_helpers import assert_error
from rollout_fleet import plant, speed
from sqlalchemy.engine import Engine


@pytest.fixture
def fleet(app_engine: Engine) -> None:
    plant(app_engine)
    plant(app_engine, "plant-2")


PATHS = ("/api/v1/rollouts", "/api/v1/rollouts/preview")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_preview_answers_the_devices_and_stores_nothing(test_client, fleet, counts) -> None:
    before = counts()
    answer = test_client.post("/api/v1/rollouts/preview", json=speed(window="50%"))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [d["device"] for d in body["devices"]] == ["pump1", "pump2", "pump3", "pump4"]
    assert (body["refused"], body["window"]) == ([], 2)
    assert counts() == before
    assert test_client.get("/api/v1/rollouts").json() == []


def test_create_show_list_and_cancel(test_client, fleet) -> None:
    created = test_client.post("/api/v1/rollouts", json=speed(window=2))
    assert created.status_code == 201, created.text
    rollout = created.json()
    assert created.headers["location"] == f"/api/v1/rollouts/{rollout['id']}"
    assert (rollout["state"], rollout["created_by"], rollout["window"]) == ("going", "admin", 2)
    going = {"queued", "dispatched"}  # the dispatcher may have sent them since
    assert rollout["counts"]["not_started"] == 2
    assert {d["state"] for d in rollout["devices"][:2]} <= going
    assert rollout["abort"] == {"failed_percent": 20.0, "min_settled": 2}
    first = rollout["devices"][0]
    task = test_client.get(f"/api/v1/tasks/{first['task_id']}").json()
    assert (task["name"], task["latest_run_id"]) == ("pump speed: pump1", first["run_id"])
    other = test_client.post("/api/v1/rollouts", json=speed(name="later")).json()
    listed = test_client.get("/api/v1/rollouts").json()
    assert [r["id"] for r in listed] == [other["id"], rollout["id"]]  # newest first
    assert listed[0]["devices"] == [] and listed[0]["counts"]["not_started"] == 3
    listed = test_client.get("/api/v1/rollouts", params={"state": "going"}).json()
    assert len(listed) == 2
    # force: the runs dispatched are marked canceled at once (the agents are asked too)
    canceled = test_client.post(f"/api/v1/rollouts/{rollout['id']}/cancel?force=true")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["state"] == "canceled"
    assert canceled.json()["counts"] == {"canceled": 2, "skipped": 2}
    shown = test_client.get(f"/api/v1/rollouts/{rollout['id']}").json()
    assert shown["reason"] == f"rollout {rollout['id']} canceled by admin"
    again = test_client.post(f"/api/v1/rollouts/{rollout['id']}/cancel")
    assert_error(again, 409, f"rollout {rollout['id']} already ended (canceled)")
    audit = test_client.get("/api/v1/audit", params={"action": "run.control"}).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    assert any(e["target"] == f"POST /api/v1/rollouts/{rollout['id']}/cancel" for e in entries)


BAD: list[tuple[dict[str, Any], int, str, list[str]]] = [
    ({"match": {"site": "plant-1", "profile": "conveyor"}}, 422, "match", ["no device"]),
    ({"match": {"site": "plant-1", "devices": ["pmp1"]}}, 422, "match.devices.0", ["pmp1"]),
    ({"op": "noop"}, 422, "op", ["a rollout runs a device op"]),
    ({"window": "250%"}, 422, "window", ["or a percentage of the devices"]),
    ({"window": 0}, 422, "window", ["a number of runs from 1"]),
    ({"window": True}, 422, "window", ["not True"]),
    ({"params": {"point": "speed_setpoint", "value": 9000}}, 422, "match", ["refused"]),
    ({"params": {"point": "speed_setpoint"}}, 422, "params.value", []),
    ({"abort": {"failed_percent": 0}}, 422, "abort.failed_percent", []),
    ({"name": "x" * 61}, 422, "name", []),
]


def test_bad_rollouts_are_refused_naming_the_field(test_client, fleet, counts) -> None:
    before = counts()
    for (change, status, field, words), path in product(BAD, PATHS):
        body = speed(**change)
        answer = test_client.post(path, json=body)
        if path.endswith("preview") and "refused" in words:
            assert answer.status_code == 200  # a preview lists refused devices
            assert len(answer.json()["refused"]) == 4
            continue
        error = assert_error(answer, status, *words)
        if field:
            assert field in [d["field"] for d in error["details"]], error
    assert counts() == before


def test_a_refused_device_is_listed_and_skip_refused_leaves_it_out(test_client, fleet) -> None:
    over = speed(value=2000, match={"site": "plant-1", "devices": ["pump*", "meter1"]})
    over["op"], over["params"] = "modbus.read", {"point": "speed_setpoint"}
    error = assert_error(test_client.post("/api/v1/rollouts", json=over), 422, "skip_refused")
    assert "meter1 (lab-c): params.point: device 'meter1'" in error["message"]
    made = test_client.post("/api/v1/rollouts", json={**over, "skip_refused": True})
    assert made.status_code == 201, made.text
    assert [d["device"] for d in made.json()["refused"]] == ["meter1"]
    assert len(made.json()["devices"]) == 4


def test_roles_and_sites(test_client, fleet, make_token) -> None:
    viewer = _bearer(make_token("viewer"))
    operator = _bearer(make_token("operator", "plant-1"))
    made = test_client.post("/api/v1/rollouts", json=speed()).json()
    elsewhere = test_client.post(
        "/api/v1/rollouts", json=speed(match={"site": "plant-2", "profile": "pump"})
    ).json()
    # a viewer reads, previews, and neither creates nor cancels
    assert test_client.get("/api/v1/rollouts", headers=viewer).status_code == 200
    preview = test_client.post("/api/v1/rollouts/preview", json=speed(), headers=viewer)
    assert preview.status_code == 200
    assert_error(test_client.post("/api/v1/rollouts", json=speed(), headers=viewer), 403)
    cancel = f"/api/v1/rollouts/{made['id']}/cancel"
    assert_error(test_client.post(cancel, headers=viewer), 403)
    # an operator of plant-1 sees and acts on plant-1's only
    listed = test_client.get("/api/v1/rollouts", headers=operator).json()
    assert [r["id"] for r in listed] == [made["id"]]
    hidden = f"/api/v1/rollouts/{elsewhere['id']}"
    assert_error(test_client.get(hidden, headers=operator), 404, "does not exist")
    assert_error(test_client.post(f"{hidden}/cancel", headers=operator), 404)
    other_site = speed(match={"site": "plant-2", "profile": "pump"})
    refused = test_client.post("/api/v1/rollouts", json=other_site, headers=operator)
    assert_error(refused, 403, "no access to site 'plant-2'")
    by_filter = test_client.get("/api/v1/rollouts", params={"site": "plant-2"}, headers=operator)
    assert_error(by_filter, 404)
    created = test_client.post("/api/v1/rollouts", json=speed(), headers=operator)
    assert created.status_code == 201, created.text
    assert test_client.post(cancel, headers=operator).status_code == 200


def test_unknown_rollout_is_404(test_client) -> None:
    assert_error(test_client.get("/api/v1/rollouts/999"), 404, "rollout 999 does not exist")
    assert_error(test_client.post("/api/v1/rollouts/999/cancel"), 404, "rollout 999")
