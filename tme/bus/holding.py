"""Holding a consumer's batch, unacked, while the store it is written to fails.

A batch handler that raises has its deliveries requeued: redelivered within
milliseconds, they fail the same way, and every round counts towards the queue's
delivery limit, so a store that is down for seconds dead-letters messages with
nothing wrong with them. Through such an outage a handler keeps its deliveries
instead (it does not return) and tries the write again until it succeeds: the
controller's event consumer through a database outage, a gateway through a journal
it cannot write. The consumer's I/O thread keeps the connection alive meanwhile.

The consumer's prefetch bounds how many deliveries are held. RabbitMQ bounds how
long: a delivery left unacked past its consumer_timeout (30 min by default) closes
the consumer's channel, which hands back what it held (one more count towards the
delivery limit); the consumer reconnects and gets them again, and the handler must
take a delivery twice without harm (both writes are idempotent by id). On stop, the
write held raises its last error and the bus requeues the batch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from tme.failure_log import FailureLog

T = TypeVar("T")

# A store that answers, yet fails the write (a disk full, a lock held), is tried again
# after a pause doubling from PAUSE_MIN_S up to PAUSE_MAX_S: tried sooner, a whole
# write would only fail sooner, and a store that stays down costs a try every 10 s.
PAUSE_MIN_S = 0.5
PAUSE_MAX_S = 10.0
# A store that does not answer at all is probed this often, so the batch goes through
# within about this long of its return (a backoff up to 10 s left it waiting that long).
PROBE_S = 0.5


class HeldWrite:
    """Tries a write until it succeeds, holding the caller's batch through an outage.

    `outage(error)` says whether an error is the store's (held, tried again) rather than
    the batch's own (raised at once: the bus requeues it, and its delivery limit dead-
    letters what keeps failing). Given `answers`, a store that does not answer it is
    probed every `probe_s` instead of waited for with the pause. The outage is logged
    through `failures`: once with its traceback, then a line a minute, and one line when
    it recovers. One per consumer thread, like its FailureLog.
    """

    def __init__(
        self,
        failures: FailureLog,
        outage: Callable[[Exception], bool],
        *,
        pause_min_s: float = PAUSE_MIN_S,
        pause_max_s: float = PAUSE_MAX_S,
        answers: Callable[[], bool] | None = None,
        probe_s: float = PROBE_S,
    ) -> None:
        self.failures = failures
        self.outage = outage
        self.pause_min_s, self.pause_max_s = pause_min_s, pause_max_s
        self.answers = answers
        self.probe_s = probe_s
        self.stopping = threading.Event()
        self.probing = False  # waiting for a store that does not answer
        self.returns_noticed = 0  # how often probing found the store back

    def stop(self) -> None:
        """Stop holding: a write held now raises its last error (the bus requeues it)."""
        self.stopping.set()

    def run(self, write: Callable[[], T]) -> T:
        """`write()`'s result; through an outage, after as many tries as it takes."""
        pause = self.pause_min_s
        while True:
            try:
                result = write()
            except Exception as exc:
                if not self.outage(exc) or self.stopping.is_set():
                    raise
                self.failures.failed(exc)
                if self.answers is None or self.answers():
                    waited = not self.stopping.wait(pause)
                    pause = min(pause * 2, self.pause_max_s)
                else:
                    waited = self._wait_until_it_answers()
                if not waited:
                    raise
            else:
                self.failures.passed()
                return result

    def _wait_until_it_answers(self) -> bool:
        """Probe every probe_s until the store answers; False if stopped first."""
        assert self.answers is not None
        self.probing = True
        try:
            while not self.stopping.wait(self.probe_s):
                if self.answers():
                    self.returns_noticed += 1
                    return True
            return False
        finally:
            self.probing = False
