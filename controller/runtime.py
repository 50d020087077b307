"""The controller's moving parts beside the API: the bus, the dispatcher, the event
consumer, the scheduling loop and the wake listener. Started and stopped explicitly
by the app's lifespan."""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from tme.bus import Bus, open_bus
from tme.controller.dispatcher import Dispatcher
from tme.controller.event_consumer import EventConsumer
from tme.controller.outbox import OutboxWake, drop_wake, serve_wake
from tme.controller.run_ready import RunReady
from tme.controller.scheduling import Scheduling
from tme.controller.store.prune import Pruner
from tme.controller.wake_channel import HOUSEKEEPING, OUTBOX, SETTLE, WakeListener

log = logging.getLogger("tme.controller")


class ControllerRuntime:
    def __init__(self, settings: Any, engine: Engine, bus: Bus | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self._own_bus = bus is None
        self.bus = (
            bus
            if bus is not None
            else open_bus(settings.broker.effective_url, **settings.broker.bus_options())
        )
        wake = threading.Event()
        self.outbox_wake = OutboxWake(engine, wake, self._stands_by)
        self.on_run_ready = RunReady(settings, self.outbox_wake)
        self.dispatcher = Dispatcher(engine, self.bus, wake)
        self.events = EventConsumer(
            engine,
            self.bus,
            queue=settings.broker.events_queue,
            binding=settings.broker.events_binding,
        )
        self.scheduling = Scheduling(engine, self.on_run_ready, settings)
        self.events.on_to_settle = self.scheduling.wake
        self.events.listeners.append(self.dispatcher.on_message)
        # Of the controllers sharing the database, the one holding the scheduler lease
        # publishes the outbox (and sends notifications: observers.py); a standby serves
        # the API and the dashboard, applies events, and wakes the leader through the
        # database when it wrote work for it (wake_channel).
        self.dispatcher.may_publish = lambda: self.scheduling.holds_lease
        self.scheduling.on_lead.append(wake.set)
        self.wakes = WakeListener(
            engine,
            {
                OUTBOX: wake.set,
                SETTLE: self.scheduling.woken,
                HOUSEKEEPING: lambda: self.scheduling.woken(housekeeping=True),
            },
        )
        self.pruner = _pruner(settings, engine, self.scheduling)

    def _stands_by(self) -> bool:
        return not self.scheduling.holds_lease

    def start(self) -> None:
        if self._own_bus:
            self.bus.start()
        self.events.start()
        self.dispatcher.start()
        self.scheduling.start()
        self.wakes.start()
        serve_wake(self.engine, self.outbox_wake)
        if self.pruner is not None:
            self.pruner.start()
        log.info("controller runtime started (broker %s)", _safe_url(self.settings))

    def stop(self) -> None:
        if self.pruner is not None:
            self.pruner.stop()
        drop_wake(self.engine, self.outbox_wake)
        self.wakes.stop()
        self.scheduling.stop()
        self.dispatcher.stop()
        self.events.stop()
        if self._own_bus:
            self.bus.stop()

    def check_bus(self) -> None:
        """Readiness: the broker answers a declaration, of the queue this controller
        consumes. (It declared the default queue, bound to every event, whatever the
        configured one: a controller on another queue left that one filling up
        unread, every event of every site kept on the broker's disk.)"""
        self.events.declare()


def _pruner(settings: Any, engine: Engine, scheduling: Scheduling) -> Pruner | None:
    """The hourly pruning of `database.retention_days`, done by the controller that
    holds the scheduler lease; None when everything is kept."""
    days = settings.database.retention_days
    if not days:
        return None
    return Pruner(engine, timedelta(days=days), should_prune=lambda: scheduling.leading)


def _safe_url(settings: Any) -> str:
    url = str(settings.broker.effective_url)
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
