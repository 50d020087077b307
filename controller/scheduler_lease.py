"""Exactly one scheduler per database: a lease row renewed by its holder.

APScheduler 3 runs a job once per scheduler sharing a job store, so a second
controller on the same database must not schedule. The holder renews the lease
well before it expires; another controller takes over only once it has expired
(the holder died) or was released (a clean stop). Works alike on SQLite and
PostgreSQL: one conditional UPDATE, or an INSERT for the very first holder.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from tme.controller.store.models import utcnow
from tme.controller.store.rows import table_of
from tme.controller.store.workflow_models import SchedulerLease

LEASE_NAME = "scheduler"
_T = table_of(SchedulerLease)


class Lease:
    def __init__(self, engine: Engine, holder: str, ttl_s: float) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = timedelta(seconds=ttl_s)

    def try_acquire(self) -> bool:
        """Take or renew the lease; False while another holder's lease is current."""
        now = utcnow()
        with self.engine.begin() as conn:
            taken = conn.execute(
                update(_T)
                .where(
                    _T.c.name == LEASE_NAME,
                    or_(_T.c.holder == self.holder, _T.c.expires_at < now),
                )
                .values(holder=self.holder, expires_at=now + self.ttl)
            ).rowcount
        if taken == 1:
            return True
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(_T).values(
                        name=LEASE_NAME, holder=self.holder, expires_at=now + self.ttl
                    )
                )
        except IntegrityError:
            return False  # someone holds it
        return True

    def current(self) -> SchedulerLease | None:
        with Session(self.engine) as session:
            return session.get(SchedulerLease, LEASE_NAME)

    def held_in(self, session: Session) -> bool:
        """Whether this holder's lease is current, read in the caller's transaction (a fence)."""
        row = session.exec(
            select(_T.c.holder, _T.c.expires_at).where(_T.c.name == LEASE_NAME)  # type: ignore[call-overload]
        ).first()
        return bool(row and row[0] == self.holder and row[1] > utcnow())

    def release(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(_T).where(_T.c.name == LEASE_NAME, col(_T.c.holder) == self.holder))
