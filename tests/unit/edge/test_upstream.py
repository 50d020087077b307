"""What a gateway says of RabbitMQ (`upstream` in its presence), from its publishes and
its connections (tme.agents.upstream)."""

from __future__ import annotations

from tme.agents.upstream import Upstream
from tme.bus.link_states import LinkStates
from tme.errors import BusError

LOST = BusError("bus link publisher: Transport indicated EOF")


def told() -> tuple[Upstream, list[bool]]:
    said: list[bool] = []
    return Upstream(said.append), said


def test_not_reached_until_a_publish_is_answered() -> None:
    upstream, said = told()
    upstream.link_changed("publisher", None)  # a connection open is no answer yet
    assert said == [] and not upstream.up
    upstream.published(True)
    assert said == [True]


def test_a_lost_connection_says_false_at_once_and_true_when_it_is_back() -> None:
    upstream, said = told()
    upstream.published(True)
    upstream.link_changed("publisher", LOST)
    upstream.link_changed("consumer:tme.site.s1", LOST)
    upstream.link_changed("publisher", None)
    assert said == [True, False]  # the consumer's is still lost
    upstream.link_changed("consumer:tme.site.s1", None)
    assert said == [True, False, True]


def test_a_publish_that_failed_meanwhile_keeps_it_false_until_one_is_answered() -> None:
    upstream, said = told()
    upstream.published(True)
    upstream.link_changed("publisher", LOST)
    upstream.published(False)
    upstream.link_changed("publisher", None)
    assert said == [True, False]
    upstream.published(True)
    assert said == [True, False, True]


def test_link_states_tell_changes_once_and_a_new_watcher_what_is_known() -> None:
    states = LinkStates()
    heard: list[tuple[str, bool]] = []
    states.down("publisher", LOST)
    states.watch(lambda name, error: heard.append((name, error is None)))
    assert heard == [("publisher", False)]
    states.down("publisher", LOST)  # another failed reconnect: no news
    states.up("publisher")
    states.up("consumer:q")
    states.forget("consumer:q")  # stopped on purpose: it no longer counts
    states.forget("consumer:q")
    assert heard == [("publisher", False), ("publisher", True), ("consumer:q", True)]
