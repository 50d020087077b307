"""Which rules a change fires: rules stored in the database and those in the settings.

`notifications.email` (when enabled, to its `to` list) and each entry of
`notifications.webhooks` are global rules; stored rules may name one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from tme.controller.change_feed import AgentChange, RunChange
from tme.controller.notifications.models import NOTIFY_EVENTS, NotificationRule

RUN_EVENTS = frozenset({"failed", "timed_out", "lost"})


@dataclass(frozen=True)
class Rule:
    key: str
    channel: str
    target: str
    events: frozenset[str]
    task_id: int | None = None
    secret: str = ""
    site: str | None = None  # None: every site

    def fires_on(self, event: str, task_id: int | None, site: str | None = None) -> bool:
        if event not in self.events:
            return False
        if self.site is not None and site != self.site:
            return False
        return self.task_id is None or event == "agent_offline" or self.task_id == task_id


def active_rules(session: Session, settings: Any) -> list[Rule]:
    rules = [
        Rule(
            key=f"rule:{r.id}",
            channel=r.channel,
            target=r.target,
            events=frozenset(r.events or NOTIFY_EVENTS),
            task_id=r.task_id,
            secret=r.secret,
            site=r.site,
        )
        for r in session.exec(select(NotificationRule).where(NotificationRule.enabled == True))  # noqa: E712
    ]
    notify = settings.notifications
    if notify.email.enabled and notify.email.to:
        rules.append(
            Rule("settings:email", "email", ",".join(notify.email.to), frozenset(NOTIFY_EVENTS))
        )
    for index, hook in enumerate(notify.webhooks):
        rules.append(
            Rule(
                key=f"settings:webhook:{index}",
                channel="webhook",
                target=hook.url,
                events=frozenset(hook.events or NOTIFY_EVENTS),
                secret=hook.secret.get_secret_value(),
            )
        )
    return rules


def describe(change: RunChange | AgentChange) -> tuple[str, str, dict[str, Any]] | None:
    """(event name, dedup key, payload) of a change worth notifying, else None."""
    if isinstance(change, AgentChange):
        if change.state != "offline" or change.role != "agent":
            return None
        key = f"agent:{change.site}/{change.agent}@{change.at.isoformat()}"
        return "agent_offline", key, {"event": "agent_offline", "agent": change.as_json()}
    if change.to_state not in RUN_EVENTS or change.from_state == change.to_state or change.late:
        return None  # only a change of the run's state
    key = f"run:{change.run_id}:{change.to_state}"
    return change.to_state, key, {"event": change.to_state, "run": change.as_json()}


def subject_and_text(payload: dict[str, Any]) -> tuple[str, str]:
    """A short, readable email for a payload."""
    if "agent" in payload:
        agent = payload["agent"]
        subject = f"[TME] agent {agent['site']}/{agent['agent']} is offline"
        return subject, f"{subject} since {agent['at']}.\n"
    run = payload["run"]
    state = run["to_state"].replace("_", " ")
    subject = f"[TME] {run['task_name']} {state}"
    lines = [
        f"Task {run['task_id']} ({run['task_name']}) {state} at {run['at']}.",
        f"Reason: {run['reason'] or '-'}",
        f"Target: {run['site'] or '-'}/{run['agent'] or '-'}/{run['device'] or '-'}",
        f"Run: {run['run_id']}",
    ]
    return subject, "\n".join(lines) + "\n"
