"""A whole TME per test: controller, gateway, three agents and simulated machines."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import tme
from tme.stack import LocalStack, StackConfig

PROFILES = Path(__file__).resolve().parents[2] / "configs" / "profiles"


def _stack(
    tmp_path: Path,
    bus_url: str,
    mqtt_url: str | None,
    profiles: Path = PROFILES,
    plant_timeout_s: float = 2.0,
) -> Iterator[LocalStack]:
    config = StackConfig(
        database_url=f"sqlite:///{tmp_path}/tme.db",
        state_dir=tmp_path / "state",
        profiles_dir=profiles,
        site=f"site-{uuid.uuid4().hex[:8]}",
        bus_url=bus_url,
        mqtt_url=mqtt_url,
        plant_timeout_s=plant_timeout_s,
    )
    with LocalStack(config) as stack:
        yield stack


@pytest.fixture
def real_stack(tmp_path: Path, rabbitmq_url: str, mqtt_url: str) -> Iterator[LocalStack]:
    """Over the real RabbitMQ and Mosquitto on this machine."""
    yield from _stack(tmp_path, rabbitmq_url, mqtt_url)


@pytest.fixture
def patient_stack(tmp_path: Path, rabbitmq_url: str, mqtt_url: str) -> Iterator[LocalStack]:
    """Over the real brokers, the agents waiting 30 s for the plant's answer: a request
    the plant holds (a delay fault) holds its bus until the test lets it be answered."""
    yield from _stack(tmp_path, rabbitmq_url, mqtt_url, plant_timeout_s=30.0)


@pytest.fixture
def steady_stack(tmp_path: Path, rabbitmq_url: str, mqtt_url: str) -> Iterator[LocalStack]:
    """Over the real brokers, the agents waiting 5 s for the plant's answer: a request the
    plant holds 4 s leaves a busy machine time to do something meanwhile (a stop's write
    again after a cut-off write then waits 5 s, not the patient stack's 30)."""
    yield from _stack(tmp_path, rabbitmq_url, mqtt_url, plant_timeout_s=5.0)


@pytest.fixture
def paced_stack(tmp_path: Path, rabbitmq_url: str, mqtt_url: str) -> Iterator[LocalStack]:
    """Over the real brokers, the pump's `run` changed at most once a minute
    (min_interval_s: 60 in a copy of the shipped profiles)."""
    profiles = tmp_path / "profiles"
    shutil.copytree(PROFILES, profiles)
    pump = yaml.safe_load((profiles / "pump.yaml").read_text())
    pump["points"]["run"]["min_interval_s"] = 60
    (profiles / "pump.yaml").write_text(yaml.safe_dump(pump))
    yield from _stack(tmp_path, rabbitmq_url, mqtt_url, profiles)


@pytest.fixture
def embedded_stack(tmp_path: Path) -> Iterator[LocalStack]:
    """The `tme demo` configuration: memory bus and embedded MQTT broker."""
    yield from _stack(tmp_path, "memory://", None)


@pytest.fixture
def client_of() -> Iterator[object]:
    clients: list[tme.Client] = []

    def make(stack: LocalStack) -> tme.Client:
        client = tme.Client(stack.url, stack.token)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
