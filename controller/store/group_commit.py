"""Group commit: writes asked for while one is in progress go together in the next.

A caller hands over its item and waits. The first caller that finds no write in
progress becomes the writer: it takes the waiting items (up to `max_group`) and
writes them in one go, one transaction and one wait for the database's write lock,
then hands each caller its own result or error. Under concurrent requests one
transaction carries many items where one each would queue the callers behind each
other (and, on SQLite, behind the write gate, where a holder competes for the
interpreter with every request thread); a lone caller writes at once and never
waits for company. Each caller returns only once its own item is written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Writes a group; returns, in order, each item's result or the error its caller raises.
GroupWriter = Callable[[list[T]], list[R | BaseException]]


@dataclass(slots=True)
class _Slot(Generic[T, R]):
    item: T
    done: bool = False
    outcome: R | BaseException | None = None


class GroupCommit(Generic[T, R]):
    def __init__(self, write: GroupWriter[T, R], max_group: int = 100) -> None:
        self._write = write
        self.max_group = max_group
        self._cond = threading.Condition()
        self._waiting: list[_Slot[T, R]] = []
        self._writing = False
        self.writes = 0  # groups written so far (for diagnostics and tests)
        self.submitted = 0  # items asked for so far

    @property
    def queued(self) -> int:
        """Items waiting for the next write."""
        return len(self._waiting)

    @property
    def writing(self) -> bool:
        return self._writing

    def submit(self, item: T) -> R:
        """Write `item` (with whatever else is waiting); its result, or raise its error."""
        slot: _Slot[T, R] = _Slot(item)
        with self._cond:
            self.submitted += 1
            self._waiting.append(slot)
            while not slot.done:
                if self._writing:
                    self._cond.wait()
                    continue
                self._writing = True
                self.writes += 1
                group = self._waiting[: self.max_group]
                del self._waiting[: self.max_group]
                self._cond.release()
                try:
                    _write_group(self._write, group)
                finally:
                    self._cond.acquire()
                    self._writing = False
                    self._cond.notify_all()
        if isinstance(slot.outcome, BaseException):
            raise slot.outcome
        return slot.outcome  # type: ignore[return-value]


def _write_group(write: GroupWriter[T, R], group: list[_Slot[T, R]]) -> None:
    """Every slot of the group ends done: a writer that fails hands its error to all."""
    try:
        outcomes = write([slot.item for slot in group])
        if len(outcomes) != len(group):
            raise RuntimeError(f"group writer gave {len(outcomes)} outcomes for {len(group)}")
    except BaseException as exc:  # handed to every caller of the group, who raise it
        outcomes = [exc] * len(group)
    for slot, outcome in zip(group, outcomes, strict=True):
        slot.outcome, slot.done = outcome, True


def by_key(write_many: Callable[[K, list[V]], list[R]]) -> GroupWriter[tuple[K, V], R]:
    """A group writer for (key, value) items: each key's values in one `write_many`
    call (a key names where they go: a database, an app); when that call fails, each
    value alone, so a bad one fails only its own caller."""

    def write(items: list[tuple[K, V]]) -> list[R | BaseException]:
        outcomes: list[R | BaseException] = []
        places: dict[K, list[int]] = {}
        for index, (key, _value) in enumerate(items):
            places.setdefault(key, []).append(index)
            outcomes.append(RuntimeError("not written"))
        for key, indexes in places.items():
            values = [items[i][1] for i in indexes]
            results: list[R | BaseException] = []
            try:
                results.extend(write_many(key, values))
            except BaseException as exc:  # handed to the caller(s), who raise it
                results = [exc]
                if len(values) > 1:  # each alone, so a bad one fails only its caller
                    results = []
                    for value in values:
                        try:
                            results.extend(write_many(key, [value]))
                        except BaseException as alone:
                            results.append(alone)
            for index, result in zip(indexes, results, strict=True):
                outcomes[index] = result
        return outcomes

    return write
