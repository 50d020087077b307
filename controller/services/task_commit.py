"""One task created and committed, together with those created meanwhile.

The REST API creates tasks one per request, from many request threads at once. Each
in a transaction of its own, they queue on the database's write lock (on SQLite, the
write gate), and each holder competes for the interpreter with every other request
thread, so under load a create held the lock about four times as long as its work
took, and the dispatcher and the event consumer waited behind the queue. Here the
creates asked for while one transaction is being written go together in the next
(store/group_commit.py): one transaction, one flush and one statement per table for
all of them, as a batch create does, while each request still answers only once its
own task is committed. A lone create is written at once. When a group's transaction
fails (a refused item, two requests with one idempotency key), each of its creates
is tried alone, so each request gets its own answer, exactly as without grouping.

A request's audit row (audit.ChangeAudit) is appended in the same transaction, so a
task and the row saying who created it are committed together or not at all, and a
create costs one transaction, not two.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from tme.controller.services import audit
from tme.controller.services.runs import RunReadyHook
from tme.controller.services.tasks import create_tasks, to_publics
from tme.controller.store.db import session_scope
from tme.controller.store.group_commit import GroupCommit, by_key
from tme.schemas import TaskCreate, TaskPublic

Place = tuple[Engine, RunReadyHook | None]  # the database and the app's run-ready hook
# The task, its idempotency key and the audit row of the request that asks for it.
Create = tuple[TaskCreate, str | None, audit.ChangeAudit | None]


def create_committed(
    engine: Engine,
    data: TaskCreate,
    *,
    idempotency_key: str | None = None,
    on_run_ready: RunReadyHook | None = None,
    change: audit.ChangeAudit | None = None,
) -> tuple[TaskPublic, bool]:
    """Store and commit a new task; its public form and whether it was created (False:
    an idempotent replay of its key). Raises what `create_task` raises for it. With
    `change`, its audit row (answered 201, at the task's location) is committed with
    the task, and `change.written` is set once it is."""
    return CREATES.submit(((engine, on_run_ready), (data, idempotency_key, change)))


def _create_group(place: Place, creates: list[Create]) -> list[tuple[TaskPublic, bool]]:
    engine, on_run_ready = place
    changes = [change for _data, _key, change in creates]
    with session_scope(engine) as session:
        if any(changes):
            audit.lock_chain(session.connection())
        warnings: list[list[str]] = []
        made = create_tasks(
            session,
            [data for data, _key, _change in creates],
            idempotency_keys=[key for _data, key, _change in creates],
            on_run_ready=on_run_ready,
            warnings=warnings,
        )
        rows = [
            change.fields(201, f"/api/v1/tasks/{task.id}")
            for (task, _created), change in zip(made, changes, strict=True)
            if change is not None
        ]
        if rows:
            audit.append_rows(session.connection(), audit.key_for(engine), rows)
        # The answers before the commit: a group that fails is written again one create
        # at a time (by_key), so nothing may fail once it is committed.
        publics = with_warnings(to_publics(session, [task for task, _created in made]), warnings)
        answers = [
            (public, created) for public, (_task, created) in zip(publics, made, strict=True)
        ]
        session.commit()
    for change in changes:
        if change is not None:
            change.mark_written(201)
    return answers


def with_warnings(publics: list[TaskPublic], warnings: list[list[str]]) -> list[TaskPublic]:
    """Each task's answer with the warnings its create gave (fleet_checks)."""
    return [
        public.model_copy(update={"warnings": noticed}) if noticed else public
        for public, noticed in zip(publics, warnings, strict=True)
    ]


# The creates of this process (its `queued` and `writes` for diagnostics and tests).
CREATES: GroupCommit[tuple[Place, Create], tuple[TaskPublic, bool]] = GroupCommit(
    by_key(_create_group)
)
