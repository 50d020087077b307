"""What watches the controller's changes beside the API: the change feed (SSE and
the dashboard read it), the notifier and the metrics. Started and stopped by the
app's lifespan, after the runtime so its event consumer can call them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from tme.controller.change_feed import ChangeFeed
from tme.controller.metrics import Metrics
from tme.controller.notifications.notifier import Notifier
from tme.error_tracking import install_error_tracking


class Observers:
    def __init__(self, app: FastAPI, settings: Any) -> None:
        self.app = app
        self.settings = settings
        self.notifier: Notifier | None = None

    def start(self, runtime: Any) -> None:
        install_error_tracking(self.settings, process="controller")
        state = self.app.state
        state.change_feed = ChangeFeed(state.engine)
        state.metrics = Metrics(state.engine, runtime)
        if runtime is not None:
            runtime.events.listeners.append(state.change_feed.on_message)
            runtime.events.batch_listeners.append(state.metrics.on_batch)
            runtime.dispatcher.confirm_listeners.append(state.metrics.on_confirmed)
            self.notifier = Notifier(state.engine, self.settings, state.change_feed)
            # Every controller records deliveries (once each: their keys are unique);
            # the one that leads sends them.
            self.notifier.may_send = lambda: runtime.scheduling.holds_lease
            state.metrics.process.loops["notify"] = self.notifier.failures
            state.notifier = self.notifier
            self.notifier.start()

    def stop(self) -> None:
        if self.notifier is not None:
            self.notifier.stop()
            self.notifier = None
