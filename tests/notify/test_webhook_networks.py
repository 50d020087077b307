"""A webhook never reaches the controller's own host or a link-local address (a cloud's
metadata service) unless notifications.webhook_refused_networks lets it: a stored rule
whose host is such an address is refused, a name that resolves to one fails its
delivery with nothing sent, and the request goes to the address that was checked."""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

import pytest
from notify_helpers import add_rule, deliveries, fail_a_run
from waiting import wait_until

from tme.config import Settings
from tme.controller.notifications import senders
from tme.settings_models import REFUSED_WEBHOOK_NETWORKS

DEFAULT_REFUSED = Settings().notifications.refused_networks()


def _by_name(url: str, name: str) -> str:
    return url.replace("127.0.0.1", name)


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://[::1]:8080/hook",
        "http://[::ffff:127.0.0.1]:8080/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://0.0.0.0:8080/hook",
    ],
)
def test_a_rule_to_this_host_or_a_link_local_address_is_refused(test_client, target: str) -> None:
    body = {"name": "hook", "channel": "webhook", "events": ["failed"], "target": target}
    response = test_client.post("/api/v1/notifications/rules", json=body)
    assert response.status_code == 422, response.text
    (detail,) = response.json()["error"]["details"]
    assert detail["field"] == "target"
    assert "notifications.webhook_refused_networks" in detail["message"]
    assert test_client.get("/api/v1/notifications/rules").json() == []


def test_a_name_that_resolves_to_this_host_is_refused_and_nothing_is_sent(http_receiver) -> None:
    url = _by_name(http_receiver.url, "localhost")
    with pytest.raises(senders.DeliveryFailed) as failed:
        senders.post_webhook(url, "", {"event": "failed"}, 1, 5, DEFAULT_REFUSED)
    assert re.search(
        r"the URL's host localhost resolves to (127\.0\.0\.1|::1), which is in"
        r" (127\.0\.0\.0/8|::1/128), a network webhooks may not reach",
        str(failed.value),
    ), failed.value
    assert http_receiver.requests == []


def test_the_request_goes_to_the_address_checked_not_to_a_second_lookups(
    http_receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: a name that resolves to an allowed address when checked, then to
    a refused one, must not take the request there."""
    answers = ["127.0.0.1", "10.255.255.1"]  # the second: refused, and nothing listens
    real = asyncio.BaseEventLoop.getaddrinfo

    async def rebinding(self: Any, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.test":
            return await real(self, host, port, *args, **kwargs)
        address = answers.pop(0) if len(answers) > 1 else answers[0]
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", rebinding)
    url = _by_name(http_receiver.url, "rebind.test")
    refused = Settings(
        notifications={"webhook_refused_networks": ["10.0.0.0/8"]}
    ).notifications.refused_networks()
    senders.post_webhook(url, "", {"event": "failed"}, 1, 5, refused)
    (headers, _body) = http_receiver.requests[0]
    port = http_receiver.url.split(":")[2].split("/")[0]
    assert headers["Host"] == f"rebind.test:{port}"  # the name, for the receiver's routing


def test_the_notifier_fails_such_a_delivery_saying_why(
    app_engine, http_receiver, start_notifier
) -> None:
    """A rule stored before the check (or a name that resolves to this host) fails each
    attempt, and the delivery ends failed with the reason; the receiver hears nothing."""
    add_rule(
        app_engine, name="ops", channel="webhook", target=_by_name(http_receiver.url, "localhost")
    )
    settings = Settings(notifications={"webhook_refused_networks": REFUSED_WEBHOOK_NETWORKS})
    start_notifier(settings, max_attempts=2)
    fail_a_run(app_engine)
    wait_until(lambda: [d.status for d in deliveries(app_engine)] == ["failed"], 10)
    assert "webhook_refused_networks" in (deliveries(app_engine)[0].last_error or "")
    assert http_receiver.requests == []


def test_a_bad_network_in_the_settings_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match=r"webhook_refused_networks[\s\S]*item 1"):
        Settings(notifications={"webhook_refused_networks": ["10.0.0.0/8", "10.0.0.1/33"]})
