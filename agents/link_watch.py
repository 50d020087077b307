"""Link-loss stop: a device the agent stops on its own when the site loses its link.

A device configured with `stop_on_link_loss_s: N` must not run unwatched: when nobody at
the controller could see or stop it for N seconds, its agent stops it as `tme device
stop` would (it writes the profile's safe values, cancels the device's other commands
and latches it), and it stays stopped, after the link is back too, until someone
resumes it (`tme device resume`, the Fleet page): the operator looks before the pump
runs again.

The agent has the link while both hold:
- its own MQTT connection is up;
- a gateway of its site (one of those its config names) says online in its retained
  presence (its will says offline when it dies or loses the broker), and does not say
  `upstream: false`: it reaches RabbitMQ (one that does not say, an older gateway,
  counts as reaching it). With two gateways, one is enough.

A link that comes back before N seconds stops nothing; one outage stops each device
once. The agent starts without the link (nothing has been heard yet): an agent that
comes up on a site cut off from the controller stops its devices after N seconds too.

Used on the agent's event loop only (the MQTT hooks hand their news to it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from tme.agents.checks import STOP_OP
from tme.protocol import FINAL_EVENT_TYPES, Command, Event

log = logging.getLogger(__name__)


class LinkWatch:
    def __init__(
        self,
        stop_after: dict[str, float],
        on_loss: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`stop_after`: device -> seconds without the link before it is stopped;
        `on_loss(device, why)` stops one (called on the loop, once per outage)."""
        self.stop_after = dict(stop_after)
        self.on_loss = on_loss
        self.clock = clock
        self.mqtt_up = False
        # each gateway heard online: whether it reaches RabbitMQ (None: it does not say)
        self.gateways: dict[str, bool | None] = {}
        self.down_since: float | None = None  # clock time the link was lost; None: it is up
        self._seen_up = False  # whether it was ever up (an agent starts without it)
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def up(self) -> bool:
        return self.mqtt_up and any(up is not False for up in self.gateways.values())

    def why_down(self) -> str:
        """What is missing of the link (empty while it is up)."""
        if not self.mqtt_up:
            return "no connection to the site's MQTT broker"
        if not self.gateways:
            return "the site gateway is offline"
        if not self.up:
            return "the site gateway cannot reach RabbitMQ"
        return ""

    def start(self) -> None:
        """Begin watching (on the loop): the link is down until it is seen up."""
        self._loop = asyncio.get_running_loop()
        self._changed()

    def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._loop = None

    def set_mqtt(self, up: bool) -> None:
        self.mqtt_up = up
        self._changed()

    def set_gateway(self, name: str, online: bool, upstream: bool | None) -> None:
        if online:
            self.gateways[name] = upstream
        else:
            self.gateways.pop(name, None)
        self._changed()

    def _changed(self) -> None:
        if self._loop is None or not self.stop_after:
            return
        if self.up:
            if self.down_since is not None and self._seen_up:
                lost_for = self.clock() - self.down_since
                log.info("link to the controller back after %.1f s", lost_for)
            elif self.down_since is not None:
                log.info("link to the controller up")
            self._seen_up = True
            self.down_since = None
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            return
        if self.down_since is None:
            self.down_since = self.clock()
            stopping = ", ".join(f"{d} after {s:g} s" for d, s in sorted(self.stop_after.items()))
            if self._seen_up:
                log.warning(
                    "link to the controller lost: %s; stopping %s if it is not back in time",
                    self.why_down(),
                    stopping,
                )
            else:  # starting: said as a warning only if the stop comes (see _lost)
                log.info("waiting for the link to the controller; stopping %s without it", stopping)
            for device, after_s in self.stop_after.items():
                self._timers[device] = self._loop.call_later(after_s, self._lost, device)

    def _lost(self, device: str) -> None:
        self._timers.pop(device, None)
        after_s = self.stop_after[device]
        why = f"link to the controller lost for {after_s:g} s ({self.why_down()})"
        try:
            self.on_loss(device, why)
        except Exception:  # the other devices' timers still run
            log.exception("stopping %s on link loss failed", device)


# A stop the agent makes itself: its id says so (the controller knows no such run, so
# its events stay at the agent, in its log; the latch reaches the controller in presence).
LOCAL_PREFIX = "local-"
LOCAL_STOP_TIMEOUT_S = 30.0  # as a stop from the controller (controller/services/device_stop)


def is_local(command_id: str) -> bool:
    return command_id.startswith(LOCAL_PREFIX)


def local_stop(site: str, agent: str, device: str, why: str) -> Command:
    """The stop of `device` that the agent runs on link loss: op device.stop like the
    controller's, latched the same way, by the agent."""
    now = datetime.now(UTC)
    return Command(
        id=f"{LOCAL_PREFIX}{uuid.uuid4()}",
        task_id=0,
        site=site,
        agent=agent,
        device=device,
        op=STOP_OP,
        params={"reason": why, "by": f"agent {agent} (link loss)"},
        timeout_s=LOCAL_STOP_TIMEOUT_S,
        not_after=now + timedelta(seconds=LOCAL_STOP_TIMEOUT_S),
        created_at=now,
    )


def log_local(event: Event) -> None:
    """What a local stop did, in the agent's log (it has no run at the controller)."""
    if event.type not in FINAL_EVENT_TYPES:
        return
    level = logging.WARNING if event.type == "succeeded" else logging.ERROR
    written = (event.result or {}).get("written") or {}
    said = event.reason or ", ".join(f"wrote {point} = {v}" for point, v in written.items())
    log.log(level, "local stop %s %s: %s", event.command_id, event.type, said)
