"""Principals of every role for the access-control tests, made in the app's database."""

from __future__ import annotations

import pytest
from security_helpers import SITE_A, SITE_B


@pytest.fixture
def anonymous(app):  # type: ignore[no-untyped-def]
    """A client of the app with no credentials (each test adds its own headers)."""
    from fastapi.testclient import TestClient

    with TestClient(app) as client:
        yield client


@pytest.fixture
def principals(make_token) -> dict[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """Headers per principal of the role matrix (None: no Authorization header)."""

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return {
        "no token": {},
        "bad token": bearer("tme_0000000000000000_not-a-real-secret"),
        "viewer": bearer(make_token("viewer")),
        "operator of another site": bearer(make_token("operator", SITE_B)),
        "operator": bearer(make_token("operator", SITE_A)),
        "engineer": bearer(make_token("engineer")),
        "admin": bearer(make_token("admin")),
    }
