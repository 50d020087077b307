"""Shared steps of the notification tests: a failed run, a stored rule, the deliveries."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from tme.controller.notifications.models import NotificationDelivery, NotificationRule
from tme.controller.services import runs as run_service
from tme.controller.services.tasks import create_task
from tme.controller.store.models import Run
from tme.schemas import TaskCreate


def fail_a_run(
    engine: Any,
    name: str = "read tank level",
    reason: str = "modbus timeout",
    outcome: str = "failed",
) -> int:
    """A run of a new task that ends in `outcome` (failed unless told) after the usual hops."""
    body = TaskCreate.model_validate(
        {"name": name, "op": "noop", "target": {"site": "plant-x", "agent": "skid-a"}}
    )
    with Session(engine) as session:
        task, _ = create_task(session, body)
        run = session.get(Run, task.latest_run_id)
        assert run is not None
        for state in ("queued", "dispatched", "running"):
            run_service.transition(session, run, state)
        run_service.transition(session, run, outcome, reason=reason, source="agent")
        session.commit()
        return task.id or 0


def email_to_ops(host: str, port: int) -> dict[str, object]:
    """notifications.email to ops@plant.example through the test's SMTP server."""
    return {
        "enabled": True,
        "smtp_host": host,
        "smtp_port": port,
        "starttls": False,
        "from_addr": "tme@plant.example",
        "to": ["ops@plant.example"],
    }


def deliveries(engine: Any) -> list[NotificationDelivery]:
    with Session(engine) as session:
        return list(session.exec(select(NotificationDelivery).order_by(NotificationDelivery.id)))


def add_rule(engine: Any, **fields: Any) -> int:
    """A rule stored as is, without the API's checks (as an older release stored it)."""
    with Session(engine) as session:
        rule = NotificationRule(**fields)
        session.add(rule)
        session.commit()
        return rule.id or 0


def add_delivery(engine: Any, rule: str, target: str, **fields: Any) -> None:
    """A webhook delivery of the rule keyed `rule` about plant-x, pending and due
    unless `fields` say otherwise."""
    with Session(engine) as session:
        session.add(
            NotificationDelivery(
                **{
                    "dedup_key": f"{rule}|{target}",
                    "rule": rule,
                    "channel": "webhook",
                    "target": target,
                    "event": "failed",
                    "site": "plant-x",
                    "payload": {"event": "failed"},
                    **fields,
                }
            )
        )
        session.commit()


def reaching_loopback(settings: Any) -> Any:
    """`settings` whose webhooks may reach this host, where the tests' receivers listen
    (unless the test chose the refused networks itself)."""
    notify = settings.notifications
    if "webhook_refused_networks" in notify.model_fields_set:
        return settings
    opened = notify.model_copy(update={"webhook_refused_networks": []})
    return settings.model_copy(update={"notifications": opened})
