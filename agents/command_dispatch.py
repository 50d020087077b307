"""The gateway's command side: journaled commands -> MQTT, held while their agent is offline.

One thread walks the journal's open entries whenever something changed (a new
command, an agent came online, MQTT reconnected) and at least once a second:
- reports `delivered` once per command;
- expires a command never sent before its not_after (source gateway);
- gives up on a sent command no agent answered long after it could have run
  (`timed_out`, outcome unknown: it was sent, so it may have run);
- holds commands for an agent whose presence says offline;
- sends pending commands, and re-sends sent ones not yet answered by the agent
  after a reconnect, an agent's return, or `resend_after_s` (the agent dedups);
  higher priority first, then in the order they came (the journal's order), so the
  commands held for an agent that returns go priority first.
Nothing is sent while MQTT is down (paho would only pile the publishes up in
memory); the reconnect offers every open entry again. An entry is marked sent
before it goes out, and one send that fails does not hold up the others.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from functools import partial

from tme.agents.bus_publisher import BusPublisher, Outgoing
from tme.agents.journal import Journal, JournalEntry
from tme.agents.woken_thread import WokenThread
from tme.failure_log import FailureLog
from tme.protocol import (
    EVENTS_EXCHANGE,
    FINAL_EVENT_TYPES,
    Command,
    Event,
    EventType,
    ProtocolError,
    cmd_topic,
)

log = logging.getLogger(__name__)

TICK_S = 1.0  # expiry of held commands is noticed within a second
RESEND_AFTER_S = 30.0  # an unanswered command is offered again this often (agents dedup)
PRUNE_EVERY_S = 3600.0  # closed entries past the journal's keep time are deleted this often
# A sent command cannot start after its not_after nor run past its timeout; its answer
# may still trail that while its agent is cut off. Past this margin the controller's own
# watchdog has long settled the run: the entry is closed rather than offered forever.
GIVE_UP_MARGIN_S = 600.0
REMEMBERED_FAILURES = 10_000  # ids whose failed send was logged (logged once each)

SendCommand = Callable[[str, bytes], None]  # (topic, payload) -> queued at QoS 1
IsConnected = Callable[[], bool]


def _always_connected() -> bool:
    return True


def event_routing_key(site: str, agent: str, kind: str) -> str:
    return f"{site}.{agent}.{kind}"


class CommandDispatcher:
    def __init__(
        self,
        site: str,
        journal: Journal,
        publisher: BusPublisher,
        send: SendCommand,
        resend_after_s: float = RESEND_AFTER_S,
        connected: IsConnected = _always_connected,
    ) -> None:
        self.site = site
        self.journal = journal
        self.publisher = publisher
        self.send = send
        self.resend_after_s = resend_after_s
        self.connected = connected  # whether a send goes out now (not into paho's memory)
        self.offline: set[str] = set()  # agents whose last presence said offline
        self._lock = threading.Lock()
        self._resend: set[str] = set()
        self._resend_all = True  # after a start, every unanswered command is offered again
        self._reported: set[tuple[str, str]] = set()  # (command, event) queued to the bus
        self._send_failures: set[str] = set()  # ids whose failed send was logged
        self.failures = FailureLog(log, "dispatch pass")
        # The journal is pruned at the gateway's start and then every PRUNE_EVERY_S, so a
        # gateway that runs for months keeps a day of closed entries, not all of them.
        self._next_prune = time.monotonic() + PRUNE_EVERY_S
        self._loop = WokenThread(self._run, "tme-gw-dispatch")
        self._wake = self._loop.wake_event
        self._stopping = self._loop.stopping

    def start(self) -> None:
        self._loop.start()

    def _why_not_sent(self) -> str:
        """Why a held command was never sent: nothing goes out while the gateway's own
        MQTT link is down, whatever its agents do."""
        if not self.connected():
            return "the gateway's MQTT link was down"
        return "the agent was offline"

    def stop(self) -> None:
        self._loop.stop()

    def wake(self) -> None:
        self._wake.set()

    def agent_presence(self, agent: str, online: bool) -> None:
        with self._lock:
            if online:
                self.offline.discard(agent)
                self._resend.add(agent)
            else:
                self.offline.add(agent)
        self.wake()

    def resend_all(self) -> None:
        with self._lock:
            self._resend_all = True
        self.wake()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            self.run_pass()

    def run_pass(self) -> None:
        """One pass over the open entries (and the journal's prune when it is due). A
        failure is logged (once, then once a minute while it lasts), never raised: the
        next tick retries."""
        try:
            self.dispatch_open_entries()
            if time.monotonic() >= self._next_prune:
                self._next_prune = time.monotonic() + PRUNE_EVERY_S
                self.journal.prune()
        except Exception as exc:
            self.failures.failed(exc)
        else:
            self.failures.passed()

    def dispatch_open_entries(self) -> None:
        with self._lock:
            resend_all, self._resend_all = self._resend_all, False
            resend, self._resend = self._resend, set()
            offline = set(self.offline)
        now = time.time()
        entries = self.journal.entries_needing_action(now - self.resend_after_s, resend, resend_all)
        to_send: list[JournalEntry] = []
        for entry in entries:
            if not entry.delivered:
                self._report(entry, "delivered", partial(self.journal.mark_delivered, entry.id))
            if entry.state == "pending" and now > entry.not_after:
                self._report(
                    entry,
                    "expired",
                    partial(self.journal.close_entry, entry.id, "expired"),
                    reason=f"not delivered before not_after: {self._why_not_sent()}",
                )
                continue
            if entry.state == "sent" and self._give_up_if_unanswered(entry, now):
                continue
            if entry.agent in offline:
                continue
            due = entry.sent_at is None or now - entry.sent_at > self.resend_after_s
            if entry.state == "pending" or resend_all or entry.agent in resend or due:
                to_send.append(entry)
        # While MQTT is down a publish only waits in paho's memory, and each round would
        # add another copy; the reconnect's resend_all offers every open entry again.
        if to_send and self.connected():
            self._send_entries(to_send)

    def _send_entries(self, entries: list[JournalEntry]) -> None:
        # Marked sent first: a crash after a send must not leave the entry pending, which
        # would be reported past not_after as "expired, never started" though it may run.
        # A resend is harmless (agents dedup by command id).
        self.journal.mark_sent_many([entry.id for entry in entries])
        for entry in entries:
            try:
                self.send(cmd_topic(self.site, entry.agent), entry.body)
            except Exception:  # one entry's failure must not hold up the others
                self._send_failed(entry)
            else:
                self._send_failures.discard(entry.id)

    def _send_failed(self, entry: JournalEntry) -> None:
        """Log a failed send once per command; it is offered again with the others."""
        if entry.id in self._send_failures:
            return
        if len(self._send_failures) >= REMEMBERED_FAILURES:
            self._send_failures.clear()
        self._send_failures.add(entry.id)
        log.exception("sending command %s to agent %r failed", entry.id, entry.agent)

    def _give_up_if_unanswered(self, entry: JournalEntry, now: float) -> bool:
        """Close a sent entry no agent answered long after it could have run, reporting
        `timed_out` with an unknown outcome (it was sent: it may have run)."""
        if now <= entry.not_after + GIVE_UP_MARGIN_S:
            return False  # the common case, decided without decoding the command
        timeout_s = _timeout_of(entry)
        if now <= entry.not_after + timeout_s + GIVE_UP_MARGIN_S:
            return False
        self._report(
            entry,
            "timed_out",
            partial(self.journal.close_entry, entry.id, "unanswered"),
            reason=(
                f"sent to agent {entry.agent!r} but never answered by {GIVE_UP_MARGIN_S:g} s"
                f" after its not_after and timeout ({timeout_s:g} s): outcome unknown,"
                " it may have run; the gateway stopped offering it"
            ),
        )
        return True

    def _report(
        self, entry: JournalEntry, type_: EventType, after: Callable[[], None], reason: str = ""
    ) -> None:
        key = (entry.id, type_)
        if key in self._reported:
            return
        self._reported.add(key)

        def confirmed() -> None:
            after()
            self._reported.discard(key)

        event = Event(
            command_id=entry.id,
            type=type_,
            site=self.site,
            agent=entry.agent,
            source="gateway",
            reason=reason,
            not_started=type_ == "expired",
        )
        self.publisher.submit(
            Outgoing(
                EVENTS_EXCHANGE,
                event_routing_key(self.site, entry.agent, type_),
                event.to_json(),
                event.id,
                after=confirmed,
                pack_site=self.site,
                may_wait=type_ not in FINAL_EVENT_TYPES,
            )
        )


def _timeout_of(entry: JournalEntry) -> float:
    """The command's timeout, 0 when it has none the agent would enforce (the agent
    rejects a non-finite or non-positive one)."""
    try:
        command: Command = Command.from_json(entry.body)
    except ProtocolError:
        return 0.0
    timeout_s = command.timeout_s
    return timeout_s if math.isfinite(timeout_s) and timeout_s > 0 else 0.0
