"""The device agent: takes commands from its MQTT cmd topic and runs each at most once.

Commands arrive on paho's thread and are handed to the agent's asyncio loop. There a
command is decoded, deduplicated against the persistent record and acked to the
broker only once it is recorded (so a crash before that leaves it with the broker).
Events go out on the evt topic at QoS 1, in order.

Import rule: the agent runs on small devices; nothing here (or below) imports the
controller, the UI, sqlmodel, sqlalchemy, fastapi or nicegui. The wire messages
(tme.protocol) are msgspec structs and load with this module (presence needs them);
the agent never loads pydantic.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from tme.agents.agent_config import AgentConfig
from tme.agents.checks import RESUME_OP, STOP_OP, Refused, check_command, is_expired
from tme.agents.command_record import CommandRecord
from tme.agents.devices import DeviceSet, build_devices
from tme.agents.event_packer import EventPacker
from tme.agents.executor import CANCEL_OP, CommandExecutor, make_event
from tme.agents.link_watch import LinkWatch, is_local, local_stop, log_local
from tme.agents.lockout import POLL_S, STOPPED_DIR, Lockouts
from tme.agents.pacing import CHANGES_FILE, PointChanges
from tme.agents.presence import PresenceAnnouncer, gateway_of, read_gateway_state
from tme.agents.state_files import StateDirLock
from tme.mqtt import MqttLink, MqttMessage
from tme.topics import cmd_topic, evt_topic, state_topic

if TYPE_CHECKING:
    from tme.protocol import Command, Event

log = logging.getLogger(__name__)

RECORD_FILE = "commands.sqlite3"
PRUNE_EVERY_S = 3600.0  # final records past their keep time are deleted this often
DRAIN_TIMEOUT_S = 10.0  # on stop, how long running operations may take to finish


class DeviceAgent:
    def __init__(self, config: AgentConfig, devices: DeviceSet | None = None) -> None:
        self.config = config
        self.devices = devices if devices is not None else build_devices(config.devices)
        self.link = MqttLink(
            config.mqtt.url,
            f"tme-agent-{config.site}-{config.agent}",
            username=config.mqtt.username,
            password=config.mqtt.password,
            protocol=config.mqtt.protocol,
            manual_ack=True,
            tls=config.mqtt.tls(),
        )
        self.lockouts = Lockouts(config.state_dir)
        self.stops = Lockouts(config.state_dir, STOPPED_DIR)
        self._state_lock = StateDirLock(config.state_dir)
        self._described = self.devices.describe(self.lockouts)
        self.presence = PresenceAnnouncer(
            self.link, config.site, config.agent, "agent", self._described
        )
        self._evt_topic = evt_topic(config.site, config.agent)
        self.events = EventPacker(config.site, self._send_events)
        self.links = LinkWatch(
            {
                name: device.stop_on_link_loss_s
                for name, device in self.devices.devices.items()
                if device.stop_on_link_loss_s is not None
            },
            self._stop_on_link_loss,
        )
        self._record: CommandRecord | None = None
        self._changes: PointChanges | None = None
        self._executor: CommandExecutor | None = None
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._devices_of: dict[str, str | None] = {}  # the device of each command in _tasks
        self._pruning: asyncio.TimerHandle | None = None
        self._watching: asyncio.TimerHandle | None = None
        self._stopping = False

    async def start(self) -> None:
        state_dir = self.config.state_dir
        self._state_lock.acquire()  # before the record: one process per record
        try:
            self._record = CommandRecord(state_dir / RECORD_FILE)
            self._changes = PointChanges(state_dir / CHANGES_FILE)
        except BaseException:
            if self._record is not None:
                self._record.close()
                self._record = None
            self._state_lock.release()
            raise
        self._prune()
        self._executor = CommandExecutor(
            self._record,
            self.devices,
            self._publish_event,
            worker_count=self.config.worker_count,
            allow_shell=self.config.allow_shell,
            lockouts=self.lockouts,
            stops=self.stops,
            changes=self._changes,
        )
        cut_off = self._record.unfinished("started")  # by the last process's end
        await self.devices.start(quiet=self.devices.quiet_after_cut_off(cut_off))
        for command in cut_off:
            self._executor.outcome_unknown(command)
        self.presence.install()
        loop = asyncio.get_running_loop()
        self.link.subscribe(
            cmd_topic(self.config.site, self.config.agent), self._on_message, loop=loop
        )
        for gateway in self.config.gateways:
            topic = state_topic(self.config.site, gateway)
            self.link.subscribe(topic, self._on_gateway_state, loop=loop)
        self.links.start()
        self.link.on_connected(lambda: self._tell_links(loop, True))
        self.link.on_disconnected(lambda: self._tell_links(loop, False))
        self.link.start()
        self._watch_devices()
        # Recorded but never started (they waited for a worker when the last process
        # stopped): run them now, without waiting for the gateway to offer them again;
        # past their not_after they expire.
        for command in self._record.unfinished("received"):
            self._launch(command)
        log.info("agent %s/%s started", self.config.site, self.config.agent)

    async def stop(self) -> None:
        # From here on nothing more starts: a command that arrives, or still waits for a
        # worker or its bus, stays received in the record, and the next process runs it
        # (started now, it would be cut off at the end of the drain: outcome unknown).
        self._stopping = True
        if self._executor is not None:
            self._executor.stopping = True
        for timer in (self._pruning, self._watching):
            if timer is not None:
                timer.cancel()
        self.links.stop()  # a stop now is no link loss
        if self._tasks:
            await asyncio.wait(list(self._tasks.values()), timeout=DRAIN_TIMEOUT_S)
        for task in self._tasks.values():
            task.cancel()
        self.events.flush()
        self.link.stop(final=self.presence.final())
        await self.devices.stop()
        if self._record is not None:
            self._record.close()
            self._record = None
        if self._changes is not None:
            self._changes.close()
            self._changes = None
        self._state_lock.release()

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    def _prune(self) -> None:
        """Delete final records past their keep time, now and every PRUNE_EVERY_S: an
        agent that runs for months keeps a day of them (`record_keep_s`), not every
        command."""
        if self._record is None:
            return  # stopped
        try:
            self._record.prune(self.config.record_keep_s)
        except Exception:  # the next round tries again; the record itself is intact
            log.exception("pruning the command record failed")
        self._pruning = asyncio.get_running_loop().call_later(PRUNE_EVERY_S, self._prune)

    def _watch_devices(self) -> None:
        """Tell the controller (presence) when a device is locked out or unlocked here,
        or its link changed (it stopped or started answering): at most once a POLL_S.
        The executor reads the lockout itself before each command that changes a device."""
        try:
            described = self.devices.describe(self.lockouts, self.stops)
            if described != self._described:
                self._described = described
                self.presence.set_devices(described)
        except Exception:  # the next look tries again; refusals do not depend on it
            log.exception("looking at the devices' lockouts and links failed")
        self._watching = asyncio.get_running_loop().call_later(POLL_S, self._watch_devices)

    def _tell_links(self, loop: asyncio.AbstractEventLoop, mqtt_up: bool) -> None:
        """From paho's thread: the MQTT connection is up or lost."""
        loop.call_soon_threadsafe(self.links.set_mqtt, mqtt_up)

    def _publish_event(self, event: Event) -> None:
        if is_local(event.command_id):
            log_local(event)  # the controller knows no such run: its presence tells it
            return
        self.events.publish(event)

    def _send_events(self, payload: bytes) -> None:
        self.link.publish(self._evt_topic, payload)

    def _on_gateway_state(self, message: MqttMessage) -> None:
        try:
            gateway = gateway_of(message.topic)
            presence = read_gateway_state(message)
            self.events.set_gateway(gateway, presence)  # unreadable: one per message
            if presence is not None:
                self.links.set_gateway(gateway, presence.state == "online", presence.upstream)
            elif not message.payload:  # cleared: no such gateway (unreadable: no news)
                self.links.set_gateway(gateway, False, None)
        finally:
            self.link.ack(message)

    def _stop_on_link_loss(self, device: str, why: str) -> None:
        """Stop the device as `tme device stop` would, on the agent's own authority: its
        safe values written, its other commands canceled, latched until resumed."""
        if self._stopping or self._record is None:
            return
        if self.stops.get(device) is not None:
            log.warning("%s: %s; it is stopped already", device, why)
            return
        stop = local_stop(self.config.site, self.config.agent, device, why)
        if not self._stop_will_run(stop):
            log.error("%s: %s, and it cannot be stopped here (locked out?)", device, why)
            return
        log.warning("%s: %s; stopping it (its safe values), until it is resumed", device, why)
        self._record.add(stop)
        self._launch(stop)

    # --- intake (on the agent's loop) ---------------------------------------------

    def _on_message(self, message: MqttMessage) -> None:
        try:
            self._take(message)
        finally:
            self.link.ack(message)  # recorded, answered or dropped: the broker may forget it

    def _take(self, message: MqttMessage) -> None:
        from tme.protocol import Command, ProtocolError

        assert self._record is not None and self._executor is not None
        if message.retain:
            log.warning(
                "dropped a retained command on %s (commands are never retained)", message.topic
            )
            return
        try:
            command: Command = Command.from_json(message.payload)
        except ProtocolError as exc:
            log.warning("dropped a malformed command on %s: %s", message.topic, exc.message)
            return
        if (command.site, command.agent) != (self.config.site, self.config.agent):
            log.warning(
                "dropped command %s addressed to %s/%s", command.id, command.site, command.agent
            )
            return
        if command.op == CANCEL_OP:
            self._cancel(command)
            return
        if command.op == RESUME_OP:
            self._resume(command)
            return
        if command.id in self._tasks:
            return  # a duplicate of a command running right now; its events are on the way
        # Recorded if new; a known id is looked up (one statement for a new command, the
        # common case, where a look-up first would take two).
        entry = None if self._record.add(command) else self._record.get(command.id)
        if entry is not None and entry.final_event is not None:
            log.info("command %s seen before: answering from the record", command.id)
            self._publish_event(entry.final_event)
            return
        if entry is not None and entry.stage == "started":
            self._executor.outcome_unknown(entry.command)
            return
        # new, or received by an earlier process and never started
        if self._stopping:
            log.info("command %s kept for the next start: the agent is stopping", command.id)
            return
        self._launch(command)

    def _launch(self, command: Command) -> None:
        """Run a recorded command in a task of its own (a stop request may cancel it). A
        stop that will run latches its device and clears the way first."""
        assert self._executor is not None
        if command.op == STOP_OP and self._stop_will_run(command):
            self._latch(command)
            self._clear_the_way(command)
        task = asyncio.get_running_loop().create_task(self._executor.execute(command))
        self._tasks[command.id] = task
        self._devices_of[command.id] = command.device
        task.add_done_callback(self._forget)

    def _cancel(self, request: Command) -> None:
        """A stop request: stop the named command if it runs, refuse it if it comes later.

        The request itself is answered (so the gateway closes its journal entry);
        the named command's own `canceled` event reports what happened to it.
        """
        assert self._record is not None and self._executor is not None
        target = str(request.params.get("command_id", ""))
        running = self._tasks.get(target)
        entry = self._record.get(target)
        if running is not None:
            self._executor.request_stop(target)
            running.cancel()
            answer = "stop requested"
        elif entry is None and target:
            placeholder = request.model_copy(update={"id": target})
            self._record.add(placeholder)
            self._executor.finish(
                placeholder, "canceled", reason="canceled before it arrived", not_started=True
            )
            answer = "canceled before it arrived"
        else:
            answer = "nothing to stop: it already finished"
        self._publish_event(make_event(request, "succeeded", reason=answer))

    def _stop_will_run(self, stop: Command) -> bool:
        """Whether the stop gets past the checks its run makes first (not expired, a known
        device with safe values, not locked out): one that is refused neither latches the
        device nor cancels its commands, and says why in its own answer."""
        if is_expired(stop):
            return False
        try:
            check_command(stop, self.devices, self.config.allow_shell)
        except Refused:
            return False
        return self.lockouts.get(str(stop.device)) is None

    def _latch(self, stop: Command) -> None:
        """A stopped device stays stopped: its changes are refused (from now, before the
        stop has written anything) until a device.resume. A latch that cannot be written
        is logged; the stop itself still runs."""
        reason = str(stop.params.get("reason") or "no reason given")
        try:
            self.stops.lock(str(stop.device), str(stop.params.get("by") or "controller"), reason)
        except Exception:
            log.exception("could not latch the stop of %s", stop.device)

    def _resume(self, request: Command) -> None:
        """Lift a stop's latch: the device takes changes again. Answered at once (it waits
        for no bus); a device that was not stopped says so."""
        try:
            ended = self.stops.unlock(str(request.device)) if request.device else None
        except Exception as exc:
            log.exception("could not lift the stop of %s", request.device)
            reason = f"could not lift the stop: {exc}"
            self._publish_event(make_event(request, "failed", reason=reason, not_started=True))
            return
        answer = "resumed" if ended is not None else "it was not stopped"
        result = {"resumed": request.device, "was": ended.public() if ended else None}
        self._publish_event(make_event(request, "succeeded", reason=answer, result=result))

    def _clear_the_way(self, stop: Command) -> None:
        """A stop of a device goes before everything queued for it: each other command
        of the device at this agent, waiting for its bus or running, is canceled (and
        reports `canceled`, saying the stop did it), so the stop waits only for what
        other devices on its bus are doing now."""
        assert self._executor is not None
        reason = f"the device was stopped ({stop.params.get('reason') or 'no reason given'})"
        for command_id, task in list(self._tasks.items()):
            if self._devices_of.get(command_id) == stop.device and not task.done():
                self._executor.request_stop(command_id, reason)
                task.cancel()

    def _forget(self, task: asyncio.Task[Any]) -> None:
        for command_id, known in list(self._tasks.items()):
            if known is task:
                del self._tasks[command_id]
                self._devices_of.pop(command_id, None)
                if task.cancelled() and self._executor is not None and self._record is not None:
                    self._executor.stopped_before_its_first_step(command_id)
        if not task.cancelled() and task.exception() is not None:
            log.error("command task failed", exc_info=task.exception())
