"""How a notification leaves TME: an email over SMTP or a signed JSON webhook."""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
from email.message import EmailMessage
from typing import Any

import httpx

SIGNATURE_HEADER = "X-TME-Signature"


class DeliveryFailed(Exception):
    """One attempt failed; the notifier retries with backoff."""


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex HMAC>` of the exact body, as the receiver recomputes it."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def post_webhook(
    url: str, secret: str, payload: dict[str, Any], delivery_id: int, timeout_s: float
) -> None:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "TME-notifier",
        "X-TME-Event": str(payload.get("event", "")),
        "X-TME-Delivery": str(delivery_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code >= 300:
        raise DeliveryFailed(f"HTTP {response.status_code}: {response.text[:200]}")


def send_email(email: Any, to: list[str], subject: str, text: str) -> None:
    """Send through the SMTP server of `notifications.email` settings."""
    message = EmailMessage()
    message["From"] = email.from_addr or "tme@localhost"
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message.set_content(text)
    try:
        with smtplib.SMTP(email.smtp_host, email.smtp_port, timeout=email.timeout_s) as smtp:
            if email.starttls:
                smtp.starttls()
            if email.username:
                smtp.login(email.username, email.password.get_secret_value())
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
