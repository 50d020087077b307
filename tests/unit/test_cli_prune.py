"""`tme db prune`: one line per table, a dry run that deletes nothing, and a duration
it cannot read refused in one line with exit 2."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import select
from typer.testing import CliRunner

from tme.cli.db import parse_duration
from tme.cli.main import app
from tme.controller.services.runs import start_run, transition
from tme.controller.services.tasks import create_tasks
from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.models import Run, Task, utcnow
from tme.controller.workflow import settle_pending
from tme.schemas import TaskCreate
from tme.states import RunState


@pytest.fixture
def database(tmp_path: Path) -> Iterator[tuple[str, Engine]]:
    """A SQLite database with one task: a run finished 100 days ago and its latest run."""
    url = f"sqlite:///{tmp_path}/tme.db"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        item = TaskCreate.model_validate({"name": "read level"})
        ((task, _),) = create_tasks(session, [item], on_run_ready=None)
        first = session.get_one(Run, task.latest_run_id)
        transition(session, first, RunState.succeeded)
        latest = start_run(session, task, reason="again", source="test")
        transition(session, latest, RunState.succeeded)
    with session_scope(engine) as session:
        settle_pending(session, None)
    with engine.begin() as connection:
        old = Run.id == first.id  # type: ignore[arg-type]
        connection.execute(update(Run).where(old).values(finished_at=utcnow() - timedelta(100)))
    yield url, engine
    engine.dispose()


def _runs(engine: Engine) -> list[str]:
    with session_scope(engine) as session:
        return list(session.exec(select(Run.id)).all())


def test_prune_prints_a_line_per_table_and_a_dry_run_deletes_nothing(
    database: tuple[str, Engine],
) -> None:
    url, engine = database
    runner = CliRunner()
    dry = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--url", url, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "runs: would delete 1" in dry.output
    assert "run_events: would delete 2" in dry.output  # pending and succeeded
    assert len(_runs(engine)) == 2

    done = runner.invoke(app, ["db", "prune", "--older-than", "90d", "--url", url])
    assert done.exit_code == 0, done.output
    lines = done.output.strip().splitlines()
    assert lines[0] == "runs: deleted 1" and "run_events: deleted 2" in lines
    assert "notification_deliveries: deleted 0" in lines and len(lines) == 10
    assert "workflow_cancels: deleted 0" in lines
    # it deletes ended dashboard sessions, never API tokens: "api_tokens: deleted 3"
    # read as if it had
    assert "dashboard_sessions: deleted 0" in lines
    assert not any(line.startswith("api_tokens") for line in lines)
    with session_scope(engine) as session:
        assert _runs(engine) == [session.exec(select(Task.latest_run_id)).one()]


@pytest.mark.parametrize(
    "bad", ["90", "ninety days", "0d", "-5d", "90y", "", "36501d", "99999999999999d"]
)
def test_prune_refuses_a_duration_it_cannot_read(bad: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/never-opened.db"
    result = CliRunner().invoke(app, ["db", "prune", "--older-than", bad, "--url", url])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --older-than:"), result.stderr
    assert not (tmp_path / "never-opened.db").exists()


def test_durations() -> None:
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration(" 12H ") == timedelta(hours=12)
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("2w") == timedelta(weeks=2)
    assert parse_duration("45s") == timedelta(seconds=45)
