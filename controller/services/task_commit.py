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
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from tme.controller.services.runs import RunReadyHook
from tme.controller.services.tasks import create_tasks, to_public
from tme.controller.store.db import session_scope
from tme.controller.store.group_commit import GroupCommit, by_key
from tme.schemas import TaskCreate, TaskPublic

Place = tuple[Engine, RunReadyHook | None]  # the database and the app's run-ready hook
Create = tuple[TaskCreate, str | None]  # the task and its idempotency key


def create_committed(
    engine: Engine,
    data: TaskCreate,
    *,
    idempotency_key: str | None = None,
    on_run_ready: RunReadyHook | None = None,
) -> tuple[TaskPublic, bool]:
    """Store and commit a new task; its public form and whether it was created (False:
    an idempotent replay of its key). Raises what `create_task` raises for it."""
    return CREATES.submit(((engine, on_run_ready), (data, idempotency_key)))


def _create_group(place: Place, creates: list[Create]) -> list[tuple[TaskPublic, bool]]:
    engine, on_run_ready = place
    with session_scope(engine) as session:
        made = create_tasks(
            session,
            [data for data, _key in creates],
            idempotency_keys=[key for _data, key in creates],
            on_run_ready=on_run_ready,
        )
        session.commit()
        return [(to_public(task), created) for task, created in made]


# The creates of this process (its `queued` and `writes` for diagnostics and tests).
CREATES: GroupCommit[tuple[Place, Create], tuple[TaskPublic, bool]] = GroupCommit(
    by_key(_create_group)
)
