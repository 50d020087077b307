"""Which rules a change fires: rules stored in the database and those in the settings.

`notifications.email` (when enabled, to its `to` list) and each entry of
`notifications.webhooks` are global rules; stored rules may name one task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, select

from tme.controller.change_feed import AgentChange, RunChange
from tme.controller.notifications.models import DEFAULT_EVENTS, NotificationRule
from tme.controller.services.durations import Duration, describe_duration
from tme.durations import seconds
from tme.shown_text import shown

RUN_EVENTS = frozenset({"failed", "timed_out", "lost"})
FLEET_EVENTS = frozenset({"agent_offline", "device_stopped"})


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
        # an agent or device event of a task's rule: of the task's site, whatever its agent
        return self.task_id is None or event in FLEET_EVENTS or self.task_id == task_id


def active_rules(session: Session, settings: Any) -> list[Rule]:
    rules = [
        Rule(
            key=f"rule:{r.id}",
            channel=r.channel,
            target=r.target,
            events=frozenset(r.events or DEFAULT_EVENTS),
            task_id=r.task_id,
            secret=r.secret,
            site=r.site,
        )
        for r in session.exec(select(NotificationRule).where(NotificationRule.enabled == True))  # noqa: E712
    ]
    notify = settings.notifications
    if notify.email.enabled and notify.email.to:
        events = frozenset(notify.email.events or DEFAULT_EVENTS)
        rules.append(Rule("settings:email", "email", ",".join(notify.email.to), events))
    for index, hook in enumerate(notify.webhooks):
        rules.append(
            Rule(
                key=f"settings:webhook:{index}",
                channel="webhook",
                target=hook.url,
                events=frozenset(hook.events or DEFAULT_EVENTS),
                secret=hook.secret.get_secret_value(),
            )
        )
    return rules


Notice = tuple[str, str, dict[str, Any]]  # event name, dedup key, payload


def describe(change: RunChange | AgentChange) -> list[Notice]:
    """What a change notifies: (event name, dedup key, payload) of each notice."""
    if isinstance(change, AgentChange):
        return _agent_notices(change)
    if change.to_state not in RUN_EVENTS or change.from_state == change.to_state or change.late:
        return []  # only a change of the run's state
    key = f"run:{change.run_id}:{change.to_state}"
    return [(change.to_state, key, {"event": change.to_state, "run": change.as_json()})]


def slow_notice(change: RunChange, duration: Duration) -> Notice:
    """The notice of a run that succeeded but took much longer than its task's usual."""
    run = change.as_json()
    usual = duration.usual
    run |= {
        "took_s": round(duration.took_s or 0.0, 3),
        "usual_s": round(usual.median_s, 3) if usual else None,
        "usual_runs": usual.runs if usual else 0,
        "summary": describe_duration(duration),
    }
    return ("slow", f"run:{change.run_id}:slow", {"event": "slow", "run": run})


def _agent_notices(change: AgentChange) -> list[Notice]:
    if change.role != "agent":
        return []
    if change.state == "offline":
        key = f"agent:{change.site}/{change.agent}@{change.at.isoformat()}"
        return [("agent_offline", key, {"event": "agent_offline", "agent": change.as_json()})]
    # Every presence of an agent says which of its devices are stopped: one notice per
    # latch (its time in the key), however often it is said, by this controller or another.
    notices: list[Notice] = []
    for name, latch in change.stopped:
        device = {"site": change.site, "agent": change.agent, "name": name, **latch}
        key = f"device_stopped:{change.site}/{change.agent}/{name}@{latch.get('at', '')}"
        notices.append(("device_stopped", key, {"event": "device_stopped", "device": device}))
    return notices


def subject_and_text(payload: dict[str, Any], public_url: str = "") -> tuple[str, str]:
    """A short, readable email for a payload; with `public_url` (http.public_url, the
    URL users reach TME at) it links the dashboard's page of the run or the fleet.

    What it quotes (a task's name stored before names were refused one, an agent's
    reason) reads as it shows: a right-to-left override is written `\\u202e`, and a line
    break in a subject `\\x0a` (a subject with one was refused, and the email never sent)."""
    subject, text = _subject_and_text(payload, public_url)
    return shown(subject, one_line=True), shown(text)


def _subject_and_text(payload: dict[str, Any], public_url: str) -> tuple[str, str]:
    base = public_url.rstrip("/")
    if "device" in payload:
        device = payload["device"]
        where = f"{device['site']}/{device['agent']}/{device['name']}"
        subject = f"[TME] device {where} stopped by {device.get('by', 'unknown')}"
        text = (
            f"{subject} at {device.get('at', 'unknown')}: {device.get('reason', '-')}.\n"
            "Its agent refuses its changes until it is resumed (tme device resume).\n"
        )
        return subject, text + (f"Fleet: {base}/ui/fleet\n" if base else "")
    if "agent" in payload:
        agent = payload["agent"]
        subject = f"[TME] agent {agent['site']}/{agent['agent']} is offline"
        text = f"{subject} since {agent['at']}.\n"
        return subject, text + (f"Fleet: {base}/ui/fleet\n" if base else "")
    run = payload["run"]
    if payload.get("event") == "slow":
        usual = run["usual_s"] or 0.0
        subject = (
            f"[TME] {run['task_name']} was slow: {seconds(run['took_s'])}, usually {seconds(usual)}"
        )
        said = f"succeeded at {run['at']}, but it {run['summary']}."
        return subject, _run_text(run, said, [], base)
    state = run["to_state"].replace("_", " ")
    subject = f"[TME] {run['task_name']} {state}"
    return subject, _run_text(
        run, f"{state} at {run['at']}.", [f"Reason: {run['reason'] or '-'}"], base
    )


def _run_text(run: dict[str, Any], said: str, more: list[str], base: str) -> str:
    """An email's text about a run: what happened to its task, then where and which run."""
    lines = [
        f"Task {run['task_id']} ({run['task_name']}) {said}",
        *more,
        f"Target: {run['site'] or '-'}/{run['agent'] or '-'}/{run['device'] or '-'}",
        f"Run: {run['run_id']}",
    ]
    if base:
        lines.append(f"Run page: {base}/ui/runs/{run['run_id']}")
    return "\n".join(lines) + "\n"
