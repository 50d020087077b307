"""Schemathesis against the OpenAPI schema, as an admin: no 500s, and every answer's
status, content type and body as the document says (openapi_errors documents the errors).

Few examples per operation keep it quick; the matrix and API tests cover the
cases by name, this looks for what nobody thought to write down.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

# Streams never end, so they cannot be fuzzed by request and response.
STREAMING = "/api/v1/events"


@pytest.fixture
def api_schema(app, admin_token):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {admin_token}"}
    return schemathesis.openapi.from_asgi("/openapi.json", app, headers=headers).exclude(
        path=STREAMING
    )


def test_api_conforms_to_its_schema(api_schema: Any, admin_token: str) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            case.call_and_validate(
                headers=headers,
                checks=[
                    not_a_server_error,
                    status_code_conformance,
                    content_type_conformance,
                    response_schema_conformance,
                ],
            )

        check()
