"""How tasks are read: their public form (TaskPublic, with their policy and whether
their latest run is settled) and the filtered, paged list, for the API and the dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import object_session
from sqlmodel import Session, col, select

from tme.controller.services import policies
from tme.controller.services.paging import MAX_PAGE, decode_id_cursor, id_page
from tme.controller.services.queries import settled_latest_among
from tme.controller.store.models import Task
from tme.controller.store.workflow_models import TaskPolicy
from tme.errors import NotFound
from tme.schemas import CHECK_OP, Target, TaskPublic
from tme.states import FINAL_STATES

FINAL_VALUES = frozenset(s.value for s in FINAL_STATES)


@dataclass(frozen=True)
class TaskFilters:
    status: str | None = None
    site: str | None = None
    agent: str | None = None
    op: str | None = None
    search: str | None = None
    # Sites the caller may see; None: every site (tasks without a site included).
    sites: tuple[str, ...] | None = None


def get_task(session: Session, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"task {task_id} does not exist", details={"task_id": task_id})
    return task


def to_public(task: Task) -> TaskPublic:
    settled = _settled_latest(object_session(task), [task])
    return _public(task, policies.policy_of(task), settled)


def to_publics(session: Session, tasks: Sequence[Task]) -> list[TaskPublic]:
    """TaskPublic of each task, their policies read in one query, and whether their
    latest runs are settled in another."""
    found = policies.policies_of(session, [task.id for task in tasks if task.id is not None])
    settled = _settled_latest(session, tasks)
    return [_public(task, found.get(task.id or 0), settled) for task in tasks]


def _settled_latest(session: OrmSession | None, tasks: Sequence[Task]) -> set[str]:
    """The tasks' latest runs that are final and settled (TaskPublic.settled); only a
    task with a final status is looked up."""
    final = [t.latest_run_id for t in tasks if t.latest_run_id and t.status in FINAL_VALUES]
    return settled_latest_among(session, final) if session is not None and final else set()


def _public(task: Task, policy: TaskPolicy | None, settled: set[str]) -> TaskPublic:
    target = target_of(task)
    return TaskPublic.model_validate(
        {
            **task.model_dump(),
            "target": target,
            "retries": task.retries or {},
            **policies.public_fields(task, policy),
            "settled": task.latest_run_id in settled,
        }
    )


def target_of(task: Task) -> Target | None:
    """The task's target, from its columns (None for a task without a site)."""
    return Target(site=task.site, agent=task.agent, device=task.device) if task.site else None


def list_tasks(
    session: Session, filters: TaskFilters, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[Task], str | None]:
    """Newest first, keyset-paginated by id; the tasks of checks (device.check) only
    when the filter's op names them."""
    limit = max(1, min(limit, MAX_PAGE))
    query = select(Task)
    if filters.sites is not None:
        query = query.where(col(Task.site).in_(filters.sites))
    if filters.status:
        query = query.where(Task.status == filters.status)
    if filters.site:
        query = query.where(Task.site == filters.site)
    if filters.agent:
        query = query.where(Task.agent == filters.agent)
    # a check is a question asked once: its task is listed when asked for by its op
    query = query.where(Task.op == filters.op if filters.op else Task.op != CHECK_OP)
    if filters.search:
        # % and _ in a search are characters to find, not LIKE wildcards
        escaped = filters.search.lower().replace("\\", "\\\\").replace("%", "\\%")
        pattern = "%" + escaped.replace("_", "\\_") + "%"
        query = query.where(
            or_(
                func.lower(Task.name).like(pattern, escape="\\"),
                func.lower(Task.description).like(pattern, escape="\\"),
            )
        )
    if cursor:
        query = query.where(col(Task.id) < decode_id_cursor(cursor))
    rows = list(session.exec(query.order_by(col(Task.id).desc()).limit(limit + 1)).all())
    return id_page(rows, limit)
