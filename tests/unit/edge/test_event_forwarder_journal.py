"""Which agent answers close the gateway's journal entry of a command."""

from __future__ import annotations

from pathlib import Path

from tme.agents.bus_publisher import Outgoing
from tme.agents.event_forwarder import EventForwarder
from tme.agents.journal import Journal
from tme.mqtt import MqttMessage
from tme.protocol import Command, Event, utcnow


class Confirming:
    """A bus publisher whose broker confirms everything at once."""

    def submit(self, item: Outgoing) -> None:
        if item.after is not None:
            item.after()


def test_only_the_final_answer_closes_the_entry(tmp_path: Path) -> None:
    """An `accepted` that reached the bus does not close the entry: the final answer
    after it may still be lost (a broker crash between snapshots, an agent killed
    before sending it), and only an open entry is offered again, for the agent to
    answer from its record."""
    journal = Journal(tmp_path / "j.sqlite3")
    command = Command(site="s1", agent="a1", op="noop", timeout_s=5, not_after=utcnow(), task_id=1)
    journal.add(command, command.to_json())
    journal.mark_sent(command.id)
    acked: list[int] = []
    forwarder = EventForwarder(
        "s1",
        journal,
        Confirming(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        lambda message: acked.append(message.mid),
    )
    for mid, type_ in enumerate(("accepted", "started", "succeeded"), start=1):
        event = Event(command_id=command.id, type=type_, site="s1", agent="a1")
        forwarder.on_event(MqttMessage("tme/v1/s1/a1/evt", event.to_json(), 1, mid, False))
        assert journal.get_state(command.id) == ("done" if type_ == "succeeded" else "sent")
    assert acked == [1, 2, 3]
    journal.close()
