"""A rollout over the real RabbitMQ and Mosquitto, real agents and the simulated plant:
every device of the site that has a speed set point gets one (those without one are
left out with skip_refused), one at a time in device name order, and the rollout
succeeds once both runs did."""

from __future__ import annotations

import pytest
from waiting import wait_until

from tme.stack import LocalStack

pytestmark = pytest.mark.external_service


def test_a_rollout_sets_each_matching_device_one_at_a_time(
    real_stack: LocalStack, client_of
) -> None:  # type: ignore[no-untyped-def]
    client = client_of(real_stack)
    site = real_stack.config.site
    wait_until(
        lambda: len(client.fleet.devices(site=site)) == 4, timeout=30, what="the agents' devices"
    )
    rollout = client.rollouts.create(
        name="belt and pump speed",
        op="modbus.write",
        params={"point": "speed_setpoint", "value": 120},
        match={"site": site},
        skip_refused=True,
        timeout_s=30,
    )
    assert [d.device for d in rollout.devices] == ["conveyor1", "pump1"]
    assert sorted(d.device for d in rollout.refused) == ["meter1", "tank1"]
    assert rollout.devices[1].state == "not_started"
    done = wait_until(
        lambda: (r := client.rollouts.get(rollout.id)).state != "going" and r,
        timeout=60,
        what="the rollout to end",
    )
    assert done.state == "succeeded", done
    assert done.counts == {"succeeded": 2}
    conveyor, pump = (client.runs.get(d.run_id) for d in done.devices)
    ended = next(e.at for e in conveyor.events if e.to_state == "succeeded")
    assert pump.created_at >= ended  # started once the conveyor's run settled
    values = client.fleet.values("pump1", site=site)
    assert {p.name: p.value for p in values.points}["speed_setpoint"] == 120
