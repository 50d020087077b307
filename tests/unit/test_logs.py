"""Logging: bound run ids, one format for TME and library lines, rotating file, idempotence."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from tme.logs import bind_run, configure_logging, get_logger, reset_logging
from tme.settings_models import LoggingSettings


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    names = ("", "pika", "amqtt", "chatty", "apscheduler")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    reset_logging()
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.setLevel(levels.pop(""))
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_json_lines_carry_bound_run_ids_for_tme_and_library_loggers() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=out)
    log = get_logger("tme.test")
    with bind_run(run_id="run-1", task_id="task-1", site="plant-1", agent="skid-a"):
        log.info("run started", attempt=1)
        logging.getLogger("some.library").warning("library says %s", "hello")
    log.info("after the run")

    started, library, after = json_lines(out)
    ids = {"run_id": "run-1", "task_id": "task-1", "site": "plant-1", "agent": "skid-a"}
    assert started["event"] == "run started" and started["attempt"] == 1
    assert ids.items() <= started.items()
    assert library["event"] == "library says hello" and library["logger"] == "some.library"
    assert ids.items() <= library.items()
    assert library["level"] == "warning" and "timestamp" in library
    assert not ids.keys() & after.keys()


def test_bind_run_skips_unset_ids_and_restores_outer_ones() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=out)
    log = get_logger("tme.test")
    with bind_run(site="plant-1"):
        with bind_run(run_id="run-2"):
            log.info("inner")
        log.info("outer")
    inner, outer = json_lines(out)
    assert (inner["site"], inner["run_id"]) == ("plant-1", "run-2")
    assert outer["site"] == "plant-1" and "run_id" not in outer
    assert "agent" not in inner


def test_console_format_is_readable() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="console"), stream=out)
    with bind_run(run_id="run-3"):
        get_logger("tme.test").warning("pump slow", rpm=900)
    line = out.getvalue().strip()
    assert "pump slow" in line and "rpm=900" in line and "run_id=run-3" in line
    assert not line.startswith("{") and "\x1b[" not in line


def test_level_and_per_library_levels_filter_lines() -> None:
    out = io.StringIO()
    settings = LoggingSettings(format="json", level="WARNING", loggers={"chatty": "ERROR"})
    configure_logging(settings, stream=out)
    get_logger("tme.test").info("hidden")
    get_logger("tme.test").warning("shown")
    logging.getLogger("chatty").warning("hidden too")
    logging.getLogger("chatty").error("shown too")
    assert [line["event"] for line in json_lines(out)] == ["shown", "shown too"]


def test_the_scheduler_librarys_two_lines_a_slot_are_quiet_by_default() -> None:
    # APScheduler logged "Running job ..." and "... executed successfully" at INFO for every
    # slot of every scheduled task, naming its job, not the task.
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=out)
    executor = logging.getLogger("apscheduler.executors.default")
    executor.info('Running job "2026-12-07T03:14:02+00:00 t3" (scheduled at 03:15:00)')
    executor.warning('Run time of job "t3" was missed by 0:00:02')
    assert [line["event"] for line in json_lines(out)] == [
        'Run time of job "t3" was missed by 0:00:02'
    ]


def test_configuring_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=first)
    configure_logging(LoggingSettings(format="json"), stream=second)
    get_logger("tme.test").info("once")
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]


def test_exceptions_in_json_have_no_local_variables() -> None:
    out = io.StringIO()
    configure_logging(LoggingSettings(format="json"), stream=out)
    password = "local-secret-value"
    try:
        raise RuntimeError("device gone")
    except RuntimeError:
        get_logger("tme.test").exception("driver failed")
    assert password not in out.getvalue()
    (line,) = json_lines(out)
    assert line["exception"][0]["exc_type"] == "RuntimeError"


def test_file_is_rotated_by_size(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "tme.log"
    settings = LoggingSettings(format="json", file=str(path), max_bytes=2000, backups=2)
    configure_logging(settings, stream=io.StringIO())
    log = get_logger("tme.test")
    with bind_run(run_id="run-4"):
        for index in range(100):
            log.info("tick", index=index)
    reset_logging()  # closes the file handler

    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["tme.log", "tme.log.1", "tme.log.2"]
    assert all((path.parent / name).stat().st_size <= 2000 for name in files)
    last = json.loads(path.read_text().splitlines()[-1])
    assert (last["event"], last["index"], last["run_id"]) == ("tick", 99, "run-4")
