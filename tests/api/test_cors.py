"""http.cors_origins: a page of a listed origin may call the API with a bearer token (a
preflight is answered without one); another origin gets no CORS headers, and without
the setting there is no CORS at all. The setting was read by nothing before."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tme.config import Settings
from tme.errors import ConfigError

OPS = "https://ops.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "authorization, if-match, content-type",
}


def _client(app_engine: Any, tmp_path: Any, origins: list[str]) -> TestClient:
    from tme.controller.app import create_app

    settings = Settings(
        database={"url": f"sqlite:///{tmp_path}/tme.db"},
        broker={"url": "memory://"},
        http={"cors_origins": origins},
    )
    return TestClient(create_app(settings, engine=app_engine, warm=False))


def test_a_listed_origin_may_call_the_api_with_a_token(app_engine, tmp_path, admin_token) -> None:
    with _client(app_engine, tmp_path, [OPS]) as client:
        preflight = client.options("/api/v1/tasks/1", headers={"Origin": OPS, **PREFLIGHT})
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == OPS
        assert "PATCH" in preflight.headers["access-control-allow-methods"]
        auth = {"Authorization": f"Bearer {admin_token}", "Origin": OPS}
        created = client.post("/api/v1/tasks", json={"name": "from the ops page"}, headers=auth)
        assert created.status_code == 201, created.text
        assert created.headers["access-control-allow-origin"] == OPS
        read = client.get(f"/api/v1/tasks/{created.json()['id']}", headers=auth)
        assert "etag" in read.headers["access-control-expose-headers"].lower()
        other = client.get("/api/v1/tasks", headers={**auth, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        refused = client.options(
            "/api/v1/tasks/1", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert "access-control-allow-origin" not in refused.headers


def test_without_the_setting_there_is_no_cors(app_engine, tmp_path) -> None:
    with _client(app_engine, tmp_path, []) as client:
        preflight = client.options("/api/v1/tasks/1", headers={"Origin": OPS, **PREFLIGHT})
        assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize("bad", ["ops.example", "https://ops.example/", "https://a/b"])
def test_an_origin_is_scheme_host_and_port(bad: str) -> None:
    with pytest.raises((ConfigError, ValueError), match="is not an origin"):
        Settings(http={"cors_origins": [bad]})
