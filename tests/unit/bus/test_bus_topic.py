"""AMQP topic matching used by the memory transport."""

from __future__ import annotations

import pytest

from tme.bus.topic import topic_matches


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("site.a", "site.a", True),
        ("site.a", "site.b", False),
        ("site.*", "site.a", True),
        ("site.*", "site.a.b", False),
        ("site.*", "site", False),
        ("#", "anything.at.all", True),
        ("#", "x", True),
        ("site.#", "site", True),  # `#` also matches zero words
        ("site.#", "site.a.b.c", True),
        ("site.#", "other.a", False),
        ("*.*.pump1", "p.skid.pump1", True),
        ("*.*.pump1", "p.skid.pump1.x", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("#.z", "a.b.z", True),
    ],
)
def test_topic_matches(pattern: str, key: str, expected: bool) -> None:
    assert topic_matches(pattern, key) is expected
