"""Times at the ends of the calendar in the `since` and `until` of the reports and the
audit log: one out of range once converted to UTC is a 422 naming the parameter (it
was a 500), and the widest range that stays in it is answered."""

from __future__ import annotations

import pytest
from api_helpers import assert_error
from fastapi.testclient import TestClient

ROUTES = [
    "/api/v1/reports/summary",
    "/api/v1/reports/summary.csv",
    "/api/v1/audit",
    "/api/v1/audit.csv",
]
OUT_OF_RANGE = {
    "before year 1 in UTC": ("since", "0001-01-01T00:00:00+14:00"),
    "after year 9999 in UTC": ("until", "9999-12-31T23:59:59-14:00"),
}


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("name", "value"), list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
def test_a_time_outside_the_calendar_in_utc_is_refused(
    test_client: TestClient, route: str, name: str, value: str
) -> None:
    error = assert_error(test_client.get(route, params={name: value}), 422, name, "UTC")
    assert [detail["field"] for detail in error["details"]] == [name]


@pytest.mark.parametrize("route", ROUTES)
def test_the_widest_range_in_the_calendar_is_answered(test_client: TestClient, route: str) -> None:
    widest = {"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59.999999Z"}
    response = test_client.get(route, params=widest)
    assert response.status_code == 200, response.text


def test_a_report_period_that_would_start_before_year_1_is_refused(
    test_client: TestClient,
) -> None:
    early = {"until": "0001-01-03T00:00:00Z", "days": 7}
    assert_error(test_client.get("/api/v1/reports/summary", params=early), 422, "until")


def test_an_offset_is_the_same_instant_in_utc(test_client: TestClient) -> None:
    period = {"since": "2026-01-01T02:00:00+02:00", "until": "2025-12-31T22:00:00-04:00"}
    report = test_client.get("/api/v1/reports/summary", params=period)
    assert report.status_code == 200, report.text
    assert (report.json()["since"], report.json()["until"]) == (
        "2026-01-01T00:00:00Z",
        "2026-01-01T02:00:00Z",
    )
