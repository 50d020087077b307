"""The agent's link watch: which devices are stopped on link loss, and when."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tme.agents.agent_config import parse_agent_config
from tme.agents.devices import build_devices
from tme.agents.link_watch import LinkWatch, is_local, local_stop
from tme.errors import ConfigError

PROFILES = Path(__file__).resolve().parents[3] / "configs" / "profiles"
AFTER_S = 0.05
DEADLINE_S = 5.0


class Losses:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.event = asyncio.Event()

    def __call__(self, device: str, why: str) -> None:
        self.seen.append((device, why))
        self.event.set()

    async def next(self) -> tuple[str, str]:
        await asyncio.wait_for(self.event.wait(), DEADLINE_S)
        self.event.clear()
        return self.seen[-1]


def up(watch: LinkWatch) -> None:
    watch.set_mqtt(True)
    watch.set_gateway("gateway", True, True)


async def test_an_agent_that_never_sees_its_link_stops_its_devices() -> None:
    losses = Losses()
    watch = LinkWatch({"pump1": AFTER_S}, losses)
    watch.start()
    device, why = await losses.next()
    assert device == "pump1"
    assert why == (
        "link to the controller lost for 0.05 s (no connection to the site's MQTT broker)"
    )
    watch.stop()


async def test_a_link_back_in_time_stops_nothing_and_each_outage_stops_once() -> None:
    losses = Losses()
    watch = LinkWatch({"pump1": AFTER_S, "belt": 3600.0}, losses)
    watch.start()
    up(watch)
    assert watch.up and watch.down_since is None
    assert not watch._timers  # the start's timers are gone: nothing can fire

    watch.set_gateway("gateway", False, None)  # the gateway's will
    assert watch.why_down() == "the site gateway is offline"
    assert set(watch._timers) == {"pump1", "belt"}
    watch.set_gateway("gateway", True, True)  # back before either time
    assert not watch._timers

    watch.set_gateway("gateway", True, False)  # the gateway cannot reach RabbitMQ
    assert not watch.up
    watch.set_mqtt(False)  # and then the broker too: the same outage, no new timers
    first = watch._timers["pump1"]
    watch.set_gateway("gateway", False, None)
    assert watch._timers["pump1"] is first
    assert await losses.next() == (
        "pump1",
        "link to the controller lost for 0.05 s (no connection to the site's MQTT broker)",
    )
    assert list(watch._timers) == ["belt"]  # the pump's fired once; the belt's waits
    up(watch)
    assert not watch._timers
    watch.stop()


async def test_a_gateway_that_does_not_say_whether_it_reaches_rabbitmq_counts_as_reaching_it() -> (
    None
):
    watch = LinkWatch({"pump1": AFTER_S}, Losses())
    watch.start()
    watch.set_mqtt(True)
    watch.set_gateway("gateway", True, None)  # an older gateway
    assert watch.up and not watch._timers
    watch.stop()


async def test_without_a_device_to_stop_nothing_is_watched() -> None:
    watch = LinkWatch({}, Losses())
    watch.start()
    assert watch.down_since is None and not watch._timers
    watch.stop()


def test_the_agents_own_stop_is_a_stop_latched_by_the_agent() -> None:
    stop = local_stop("plant", "pumps", "pump1", "link to the controller lost for 60 s (...)")
    assert (stop.op, stop.device, stop.site, stop.agent) == (
        "device.stop",
        "pump1",
        "plant",
        "pumps",
    )
    assert stop.params == {
        "reason": "link to the controller lost for 60 s (...)",
        "by": "agent pumps (link loss)",
    }
    assert is_local(stop.id) and not is_local("6f1c6a3e-2d7b-4a59-9a38-0b5bd1f3f0aa")
    assert stop.not_after > stop.created_at


def _config(device: dict) -> dict:
    return {"site": "plant", "agent": "pumps", "devices": {"pump1": device}}


def _pump(**extra: object) -> dict:
    return {
        "driver": "modbus_tcp",
        "connection": {"host": "127.0.0.1", "port": 5020},
        "unit": 1,
        "profile": str(PROFILES / "pump.yaml"),
        **extra,
    }


def test_the_setting_is_told_in_presence_and_checked_when_the_config_loads(
    tmp_path: Path,
) -> None:
    config = parse_agent_config(_config(_pump(stop_on_link_loss_s=120)))
    devices = build_devices(config.devices)
    assert devices.devices["pump1"].describe()["stop_on_link_loss_s"] == 120.0
    plain = build_devices(parse_agent_config(_config(_pump())).devices)
    assert "stop_on_link_loss_s" not in plain.devices["pump1"].describe()

    for bad, said in ((0, "must be more than 0 seconds, got 0"), ("soon", "expected a number")):
        with pytest.raises(ConfigError) as caught:
            parse_agent_config(_config(_pump(stop_on_link_loss_s=bad)))
        assert "devices.pump1.stop_on_link_loss_s" in caught.value.message
        assert said in caught.value.message

    valve = tmp_path / "valve.yaml"
    valve.write_text(
        "name: valve\npoints:\n  opening: {address: 0, table: holding_register, access: rw}\n"
    )
    config = parse_agent_config(_config(_pump(profile=str(valve), stop_on_link_loss_s=60)))
    with pytest.raises(ConfigError) as caught:
        build_devices(config.devices)
    assert caught.value.key == "devices.pump1.stop_on_link_loss_s"
    assert "profile 'valve' gives none: set safe_value on the points a stop must write" in (
        caught.value.message
    )
    assert "(opening)" in caught.value.message


def test_the_example_agent_config_loads_with_its_link_loss_stop() -> None:
    from tme.agents.agent_config import load_agent_config

    config = load_agent_config(PROFILES.parent / "agent.example.yaml")
    devices = build_devices(config.devices)
    assert devices.devices["pump1"].stop_on_link_loss_s == 300.0


async def test_with_two_gateways_one_online_that_reaches_rabbitmq_is_the_link() -> None:
    losses = Losses()
    watch = LinkWatch({"pump1": AFTER_S}, losses)
    watch.start()
    watch.set_mqtt(True)
    watch.set_gateway("gw1", True, True)
    watch.set_gateway("gw2", True, True)
    watch.set_gateway("gw1", False, None)  # gw1 dies: gw2 still relays
    assert watch.up and not watch._timers
    watch.set_gateway("gw2", True, False)  # gw2 cut off from RabbitMQ too
    assert not watch.up and watch.why_down() == "the site gateway cannot reach RabbitMQ"
    watch.set_gateway("gw1", True, True)  # gw1 back
    assert watch.up and not watch._timers
    watch.stop()


def test_the_agent_config_names_one_gateway_or_several() -> None:
    one = parse_agent_config({"site": "plant", "agent": "pumps", "gateway": "gw1"})
    assert one.gateways == ("gw1",)
    assert parse_agent_config({"site": "plant", "agent": "pumps"}).gateways == ("gateway",)
    two = parse_agent_config({"site": "plant", "agent": "pumps", "gateway": ["gw1", "gw2"]})
    assert two.gateways == ("gw1", "gw2")
    for bad, said in (
        ([], "a list of 1 to 8 names"),
        (["gw1", "gw1"], "a gateway named twice"),
        (["gw1", "gw 2"], "gateway.1: 'gw 2' is not a name"),
        (3, "expected a gateway's name or a list"),
    ):
        with pytest.raises(ConfigError) as caught:
            parse_agent_config({"site": "plant", "agent": "pumps", "gateway": bad})
        assert said in caught.value.message, caught.value.message
