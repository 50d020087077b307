"""Fixtures of the controller's dispatch tests: each runs on the memory bus and on the
real RabbitMQ."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(params=["memory", pytest.param("amqp", marks=pytest.mark.external_service)])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "amqp":
        return str(request.getfixturevalue("rabbitmq_url"))
    return f"memory://dispatch-{uuid.uuid4().hex[:8]}"
