"""open_bus: chosen by URL scheme, options checked, nothing connects before start."""

from __future__ import annotations

import threading

import pytest

from tme.bus import open_bus
from tme.bus.amqp import AmqpBus
from tme.bus.memory import MemoryBus
from tme.errors import BusError, ConfigError, UnknownName


def test_scheme_selects_the_transport() -> None:
    assert isinstance(open_bus("memory://"), MemoryBus)
    assert isinstance(open_bus("amqp://guest:guest@127.0.0.1:5672/%2F"), AmqpBus)
    assert isinstance(open_bus("amqps://u:p@rabbit.example:5671/%2F"), AmqpBus)


def test_unknown_scheme_names_the_known_ones_and_suggests() -> None:
    with pytest.raises(UnknownName) as caught:
        open_bus("amqpp://localhost")
    assert "amqp://" in caught.value.message
    assert "did you mean amqp" in caught.value.message


def test_opening_does_not_connect_or_start_threads() -> None:
    before = set(threading.enumerate())
    bus = open_bus("amqp://guest:guest@127.0.0.1:1/%2F")  # nothing listens on port 1
    assert set(threading.enumerate()) == before
    with pytest.raises(BusError):
        bus.publish("tme.dispatch", "site.x", b"{}")  # not started


def test_start_against_a_dead_broker_is_a_bus_error() -> None:
    bus = open_bus("amqp://guest:guest@127.0.0.1:1/%2F")
    with pytest.raises(BusError):
        bus.start()
    bus.stop()


def test_options_are_checked() -> None:
    bus = open_bus("memory://", prefetch=10, delivery_limit=3, confirm_timeout_s=2.5)
    assert isinstance(bus, MemoryBus)
    assert (bus.options.prefetch, bus.options.delivery_limit) == (10, 3)
    with pytest.raises(ConfigError, match="did you mean 'prefetch'"):
        open_bus("memory://", prefech=10)
    with pytest.raises(ConfigError):
        open_bus("memory://", delivery_limit=-1)
    with pytest.raises(ConfigError):
        open_bus("memory://", confirm_timeout_s=0)
