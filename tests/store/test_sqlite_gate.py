"""SQLite's one writer at a time is handed over by an in-process gate: a second
writer waits on the gate (not in SQLite's sleeping busy handler) and goes on the
moment the first commits or rolls back; readers are never held up by it."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from pathlib import Path

from sqlmodel import Session, select
from waiting import wait_until

from tme.controller.store.db import make_engine, session_scope, upgrade
from tme.controller.store.models import Site
from tme.controller.store.sqlite_gate import gate_of, pipeline_writes


def _engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path}/gate.db")
    upgrade(engine)
    return engine


def _write_in_thread(engine, name: str, done: threading.Event) -> threading.Thread:  # type: ignore[no-untyped-def]
    def write() -> None:
        with session_scope(engine) as session:
            session.add(Site(name=name))
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def test_a_second_writer_waits_on_the_gate_and_goes_on_after_the_commit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    gate = gate_of(engine)
    assert gate is not None and not gate.held
    second_done = threading.Event()
    with session_scope(engine) as session:
        session.add(Site(name="first"))
        session.flush()  # the first write: this connection holds the gate now
        assert gate.held
        thread = _write_in_thread(engine, "second", second_done)
        wait_until(lambda: gate.waiting == 1, what="the second writer waiting on the gate")
        assert not second_done.is_set()
        with Session(engine) as reader:  # a reader is not held up
            assert reader.exec(select(Site)).all() == []
    thread.join(10)
    assert second_done.is_set() and not gate.held
    assert gate.held_s > 0  # both writers' holds are counted (benchmarks print it)
    with Session(engine) as session:
        assert sorted(s.name for s in session.exec(select(Site))) == ["first", "second"]


def test_a_rolled_back_writer_opens_the_gate(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    gate = gate_of(engine)
    assert gate is not None
    try:
        with session_scope(engine) as session:
            session.add(Site(name="doomed"))
            session.flush()
            raise RuntimeError("the change fails")
    except RuntimeError:
        pass
    assert not gate.held
    done = threading.Event()
    _write_in_thread(engine, "next", done).join(10)
    assert done.is_set()


def test_many_writer_threads_all_commit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                with session_scope(engine) as session:
                    session.add(Site(name=f"w{n}-{i}"))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with Session(engine) as session:
        assert len(session.exec(select(Site)).all()) == 120
    gate = gate_of(engine)
    assert gate is not None and not gate.held


def test_a_pipeline_writer_goes_before_waiting_api_writers(tmp_path: Path) -> None:
    """The dispatcher and the event consumer finish work under way: when the gate opens,
    a waiting pipeline writer takes it before API writers that waited longer."""
    engine = _engine(tmp_path)
    gate = gate_of(engine)
    assert gate is not None
    order: list[str] = []

    def write(name: str, pipeline: bool) -> None:
        with ExitStack() as stack:
            if pipeline:
                stack.enter_context(pipeline_writes())
            with session_scope(engine) as session:
                session.add(Site(name=name))
                session.flush()
                order.append(name)

    threads = []
    with session_scope(engine) as session:
        session.add(Site(name="holder"))
        session.flush()  # holds the gate while the others line up
        for n, (name, pipeline) in enumerate(
            [("api-1", False), ("api-2", False), ("dispatcher", True)], start=1
        ):
            threads.append(threading.Thread(target=write, args=(name, pipeline)))
            threads[-1].start()
            wait_until(lambda n=n: gate.waiting == n, what=f"{name} waiting on the gate")
    for thread in threads:
        thread.join(10)
    assert order == ["dispatcher", "api-1", "api-2"]
    assert not gate.held and gate.waiting == 0
