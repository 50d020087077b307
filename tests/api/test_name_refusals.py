"""A bad site, agent, device, trigger or point name is refused with a 422 that says
what such a name may hold, where it quoted the regular expression; the OpenAPI
document still gives the pattern, and nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest

DEVICE = {"site": "plant-1", "agent": "skid-a", "device": "pump1"}
RULE = "1 to 64 letters, digits"


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            {"op": "noop", "target": {"site": "", "agent": "skid-a"}},
            "target.site",
            "'' is not a name a task can target (1 to 64 letters, digits, - and _,",
        ),
        (
            {"op": "noop", "target": {"site": "plant-1", "agent": "skid a/#"}},
            "target.agent",
            "'skid a/#' is not a name a task can target",
        ),
        (
            {
                **{"op": "modbus.read", "params": {"point": "x"}},
                "target": {**DEVICE, "device": "p+"},
            },
            "target.device",
            "'p+' is not a name a task can target",
        ),
        (
            {"trigger": "batch one"},
            "trigger",
            "'batch one' is no trigger name: 1 to 64 letters, digits, _ . or -",
        ),
        (
            {"op": "modbus.read", "target": DEVICE, "params": {"point": "speed set"}},
            "params.point",
            "'speed set' is no point name: 1 to 64 letters, digits, _ . or -",
        ),
        (
            {"op": "modbus.read", "target": DEVICE, "params": {"points": ["a", "b/c"]}},
            "params.points.1",
            "'b/c' is no point name",
        ),
    ],
)
def test_a_bad_name_says_what_a_name_may_hold(
    test_client: Any, body: dict[str, Any], field: str, words: str
) -> None:
    before = test_client.get("/api/v1/tasks").json()["items"]
    answer = test_client.post("/api/v1/tasks", json={"name": "bad name", **body})
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["error"]["details"]
    assert detail["field"] == field
    assert words in detail["message"] and RULE in detail["message"]
    assert "pattern" not in answer.text  # no regular expression for the reader to decode
    assert test_client.get("/api/v1/tasks").json()["items"] == before


def test_a_bad_trigger_name_in_the_path_says_what_a_name_may_hold(test_client: Any) -> None:
    answer = test_client.post("/api/v1/triggers/batch%20one")
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["error"]["details"]
    assert detail["field"] == "name"
    assert detail["message"].startswith("'batch one' is no trigger name: 1 to 64 letters")
    assert "pattern" not in answer.text


def test_the_openapi_document_still_gives_the_name_patterns(test_client: Any) -> None:
    schemas = test_client.get("/openapi.json").json()["components"]["schemas"]
    site = schemas["Target"]["properties"]["site"]
    assert site["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$"
    trigger = schemas["TaskCreate"]["properties"]["trigger"]["anyOf"][0]
    assert trigger["pattern"] == r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/tasks?site=plant%201", "site"),
        ("/api/v1/tasks?agent=skid/a", "agent"),
        ("/api/v1/agents?site=plant%201", "site"),
        ("/api/v1/devices?agent=-skid", "agent"),
        ("/api/v1/devices/pump1/values?site=plant.1", "site"),
        ("/api/v1/events?site=plant%201", "site"),
    ],
)
def test_a_site_or_agent_filter_no_name_can_match_is_refused(
    test_client: Any, path: str, field: str
) -> None:
    """It answered an empty list (or 404): a filter is checked, never left to match
    nothing (docs/api.md)."""
    with test_client.stream("GET", path) as answer:  # the event stream, once open, stays
        assert answer.status_code == 422
        answer.read()
    (detail,) = answer.json()["error"]["details"]
    assert detail["field"] == field
    assert "is not a name a task can target (1 to 64 letters" in detail["message"]


def test_a_site_filter_that_is_a_name_still_filters(test_client: Any) -> None:
    assert test_client.get("/api/v1/tasks?site=plant-1&agent=skid_a").status_code == 200
    assert test_client.get("/api/v1/devices?site=plant-1").json() == []
