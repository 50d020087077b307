"""client.rollouts (sync and async) and `tme rollout` over real HTTP: preview, create,
list, show and cancel, tables that fit 80 columns, and one error line with a non-zero
exit for a rollout the controller refuses."""

from __future__ import annotations

import json

import pytest
from cli_lines import one_line_error
from rollout_fleet import plant
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import tme
from tme.cli.main import app
from tme.cli.output import console
from tme.errors import ValidationError
from tme.rollout_schemas import RolloutCreate, RolloutPublic

SPEED = ["--op", "modbus.write", "--param", "point=speed_setpoint", "--param", "value=1200"]
PUMPS = ["--site", "plant-1", "--profile", "pump"]


@pytest.fixture
def fleet(app_engine: Engine) -> None:
    plant(app_engine)


@pytest.fixture
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "width", 80)


def _tme(live_url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [*args, "--url", live_url])
    return result.exit_code, result.stdout, result.stderr


def test_the_sdk_previews_creates_reads_and_cancels(live_url: str, fleet: None) -> None:
    body = RolloutCreate(
        name="speed",
        op="modbus.write",
        params={"point": "speed_setpoint", "value": 1200},
        match={"site": "plant-1", "devices": ["pump*"]},
    )
    with tme.Client(live_url) as client:
        plan = client.rollouts.preview(body, window="50%")
        assert [d.device for d in plan.devices] == ["pump1", "pump2", "pump3", "pump4"]
        assert plan.window == 2
        made = client.rollouts.create(body, window=2)
        assert made.counts["not_started"] == 2 and sum(made.counts.values()) == 4
        assert [r.id for r in client.rollouts.list(state="going")] == [made.id]
        assert client.rollouts.get(made.id).devices[0].task_id is not None
        assert client.rollouts.cancel(made.id, force=True).state == "canceled"
        with pytest.raises(ValidationError, match="window"):
            client.rollouts.create(body, window="200%")  # refused before it is sent


async def test_the_async_sdk_does_the_same(live_url: str, fleet: None) -> None:
    async with tme.AsyncClient(live_url) as client:
        made = await client.rollouts.create(
            name="read speed",
            op="modbus.read",
            params={"point": "actual_speed"},
            match={"site": "plant-1", "profile": "pump"},
        )
        assert (await client.rollouts.get(made.id)).window == 1
        assert [r.id async for r in client.rollouts.list()] == [made.id]
        assert (await client.rollouts.preview(made_body(made))).devices
        assert (await client.rollouts.cancel(made.id)).state == "canceled"


def test_the_sdk_takes_a_rollout_as_a_dict(live_url: str, fleet: None) -> None:
    # A dict alone raised AttributeError ('dict' object has no attribute 'model_dump').
    body = {"name": "read speed", "op": "modbus.read", "params": {"point": "actual_speed"},
            "match": {"site": "plant-1", "profile": "pump"}}  # fmt: skip
    with tme.Client(live_url) as client:
        assert len(client.rollouts.preview(body).devices) == 4
        made = client.rollouts.create(body, window=2)
        assert (made.name, made.window) == ("read speed", 2)
        client.rollouts.cancel(made.id, force=True)


def made_body(made: RolloutPublic) -> RolloutCreate:
    return RolloutCreate(name=made.name, op=made.op, params=made.params, match=made.match)


def test_the_cli_previews_creates_lists_shows_and_cancels(
    live_url: str, fleet: None, narrow: None
) -> None:
    code, out, _ = _tme(live_url, "rollout", "preview", "--name", "speed", *SPEED, *PUMPS)
    assert code == 0, out
    assert "4 to run, 1 at a time; 0 refused" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    code, out, err = _tme(
        live_url, "rollout", "create", "--name", "speed", *SPEED, *PUMPS, "--window", "2"
    )
    assert code == 0, err
    rollout_id = int(out.strip())
    code, out, _ = _tme(live_url, "rollout", "list")
    assert code == 0 and "going" in out and "2 not_started" in out  # 2 queued, or dispatched
    code, out, _ = _tme(live_url, "rollout", "show", str(rollout_id))
    assert code == 0, out
    assert "state: going" in out and "window: 2 (asked 2)" in out
    assert all(len(line) <= 80 for line in out.splitlines())
    shown = json.loads(_tme(live_url, "rollout", "show", str(rollout_id), "--json")[1])
    run_id = shown["devices"][0]["run_id"]
    assert any(run_id in line for line in out.splitlines())  # copyable whole
    code, out, _ = _tme(live_url, "rollout", "cancel", str(rollout_id), "--force")
    assert code == 0 and f"rollout {rollout_id} canceled: 2 canceled, 2 skipped" in out


def test_the_cli_says_why_a_rollout_is_refused_in_one_line(live_url: str, fleet: None) -> None:
    too_fast = ["--op", "modbus.write", "--param", "point=speed_setpoint", "--param", "value=9000"]
    result = CliRunner().invoke(
        app, ["rollout", "create", "--name", "x", *too_fast, *PUMPS, "--url", live_url]
    )
    assert result.exit_code == 2, result.output
    assert "4 matched devices are refused (every matched device is refused)" in result.stderr
    result = CliRunner().invoke(app, ["rollout", "show", "999", "--url", live_url])
    assert "rollout 999 does not exist [not_found]" in one_line_error(result)
