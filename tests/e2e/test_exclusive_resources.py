"""Two tasks naming one exclusive resource, over the embedded path (`tme demo`'s memory
bus and MQTT broker, a real agent): the second's run waits while the first's runs on
the machine, and runs once the first has stopped."""

from __future__ import annotations

from waiting import wait_until

from tme.stack import LocalStack


def _sleep(client, stack: LocalStack, name: str, seconds: float):  # type: ignore[no-untyped-def]
    return client.tasks.create(
        name=name,
        op="sleep",
        target={"site": stack.config.site, "agent": "skid-a"},
        params={"seconds": seconds},
        timeout_s=120,
        resources=["tank1"],
    )


def _latest(client, task_id: int):  # type: ignore[no-untyped-def]
    return next(iter(client.tasks.runs(task_id)))


def test_a_run_waits_for_the_resource_held_by_a_run_on_the_machine(
    embedded_stack, client_of
) -> None:
    client = client_of(embedded_stack)
    flush = _sleep(client, embedded_stack, "flush tank1", 60)
    flushing = wait_until(
        lambda: (r := _latest(client, flush.id)).state == "running" and r,
        timeout=20,
        what="the flush to run",
    )
    fill = _sleep(client, embedded_stack, "fill tank1", 0.05)
    waiting = _latest(client, fill.id)
    assert waiting.state == "waiting", waiting
    assert waiting.reason == (
        f"waiting for resource tank1, held by run {flushing.id} of task {flush.id} (flush tank1)"
    )
    client.runs.cancel(flushing.id)
    wait_until(
        lambda: _latest(client, fill.id).state == "succeeded", timeout=20, what="the fill to run"
    )
    assert client.runs.get(flushing.id).state == "canceled"
    detail = client.runs.get(waiting.id)
    started = [e.at for e in detail.events if e.to_state == "running"]
    stopped = [e.at for e in client.runs.get(flushing.id).events if e.to_state == "canceled"]
    assert started and stopped and started[0] >= stopped[0]
