"""A task's revision: GET answers it as the ETag, PATCH with If-Match naming another is
412 and changes nothing, so two clients editing one task never overwrite each other
unseen; the CLI reads and applies its change again when that happens."""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
from api_helpers import assert_error

import tme
from tme.cli.main import app

WATCH = {"name": "watch", "trigger": "shift", "params": {"x": 0}}


def _create(test_client: Any) -> dict[str, Any]:
    response = test_client.post("/api/v1/tasks", json=WATCH)
    assert response.status_code == 201, response.text
    return response.json()


def test_a_change_from_an_old_revision_is_refused_and_changes_nothing(test_client) -> None:
    task = _create(test_client)
    url = f"/api/v1/tasks/{task['id']}"
    read = test_client.get(url)
    assert read.headers["ETag"] == '"1"' and read.json()["revision"] == 1
    first = test_client.patch(url, json={"params": {"x": 1}}, headers={"If-Match": '"1"'})
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] == '"2"' and first.json()["revision"] == 2
    stale = test_client.patch(url, json={"params": {"x": 9}}, headers={"If-Match": '"1"'})
    error = assert_error(stale, 412, "changed since it was read", "revision 2")
    assert error["code"] == "precondition_failed"
    assert test_client.get(url).json()["params"] == {"x": 1}
    # W/"2", 2 and * are taken; without If-Match the last change wins, as before
    for header in ('W/"2"', "3", "*"):
        again = test_client.patch(url, json={"description": header}, headers={"If-Match": header})
        assert again.status_code == 200, again.text
    assert test_client.patch(url, json={"description": "plain"}).json()["revision"] == 6
    bad = test_client.patch(url, json={"description": "x"}, headers={"If-Match": "abc"})
    assert_error(bad, 422, "If-Match")


def test_of_two_changes_sent_from_the_same_revision_one_is_refused(live_url: str) -> None:
    """Whichever transaction reads first: the second finds the first's revision."""
    with tme.Client(live_url) as client:
        task = client.tasks.create(name="race", trigger="shift")
    token = os.environ["TME_TOKEN"]  # the admin's, set by live_url
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def change(value: int) -> None:
        with httpx.Client(base_url=live_url, headers={"Authorization": f"Bearer {token}"}) as c:
            barrier.wait(10)
            response = c.patch(
                f"/api/v1/tasks/{task.id}",
                json={"params": {"v": value}},
                headers={"If-Match": '"1"'},
            )
            codes.append(response.status_code)

    threads = [threading.Thread(target=change, args=(v,)) for v in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(codes) == [200, 412]
    with tme.Client(live_url) as client:
        assert client.tasks.get(task.id).revision == 2


def test_tme_task_update_applies_its_change_again_to_a_task_changed_meanwhile(
    live_url: str, monkeypatch
) -> None:
    """`--param a=1` is merged into the params as read; another client adds b meanwhile:
    the stale change is refused, read again and made again, and both are kept."""
    from typer.testing import CliRunner

    from tme.client.sync import Tasks

    with tme.Client(live_url) as client:
        task = client.tasks.create(name="shared", trigger="shift", params={"x": 0})
    real_get = Tasks.get
    interfered: list[int] = []

    def get_then_someone_else_changes_it(self: Any, task_id: int) -> Any:
        read = real_get(self, task_id)
        if not interfered:
            interfered.append(task_id)
            with tme.Client(live_url) as other:
                other.tasks.update(task_id, params={**read.params, "b": 2})
        return read

    monkeypatch.setattr(Tasks, "get", get_then_someone_else_changes_it)
    result = CliRunner().invoke(
        app, ["task", "update", str(task.id), "--param", "a=1", "--url", live_url]
    )
    assert result.exit_code == 0, result.output
    monkeypatch.setattr(Tasks, "get", real_get)
    with tme.Client(live_url) as client:
        assert client.tasks.get(task.id).params == {"x": 0, "a": 1, "b": 2}
