"""`tme task create --file` with a list of tasks: one batch request, all or none."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from test_cli_task import assert_one_line_error, tme_cli

import tme


def _names() -> list[str]:
    marker = uuid.uuid4().hex[:8]
    return [f"cli-batch-{marker}-{i}" for i in range(2)]


def _stored(live_url: str, marker: str) -> list[str]:
    with tme.Client(live_url) as client:
        return sorted(t.name for t in client.tasks.list(search=marker))


def test_a_yaml_list_creates_every_task_and_prints_the_table(live_url: str, tmp_path: Path) -> None:
    first, second = _names()
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        f"- name: {first}\n  op: sleep\n  params: {{seconds: 5}}\n"
        f"  target: {{site: s1, agent: a1}}\n"
        f"- name: {second}\n",
        encoding="utf-8",
    )
    code, out, err = tme_cli("task", "create", "--url", live_url, "--file", str(tasks))
    assert code == 0, err
    assert "Tasks" in out and first in out and second in out and "s1/a1" in out
    assert _stored(live_url, first[:-2]) == [first, second]


def test_a_batch_body_in_json_with_an_override_for_every_task(
    live_url: str, tmp_path: Path
) -> None:
    names = _names()
    tasks = tmp_path / "tasks.json"
    tasks.write_text(json.dumps({"tasks": [{"name": n} for n in names]}), encoding="utf-8")
    args = ["task", "create", "--url", live_url, "--file", str(tasks), "--site", "s2", "--json"]
    code, out, err = tme_cli(*args, "--idempotency-key", names[0])
    assert code == 0, err
    made = json.loads(out)
    assert [t["name"] for t in made] == names
    assert [t["target"]["site"] for t in made] == ["s2", "s2"]
    code, again, err = tme_cli(*args, "--idempotency-key", names[0])
    assert code == 0, err
    assert [t["id"] for t in json.loads(again)] == [t["id"] for t in made]


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("[]", ["--file", "a list of them"]),
        ("tasks: []", ["--file", "a list of them"]),
        ("- name: fine\n- just text\n", ["--file", "task 1"]),
        ("- [unclosed\n", ["--file"]),
        ("- name: fine\n- name: bad\n  priority: 12\n", ["tasks.1.priority"]),
        ("- name: fine\n- name: bad\n  depends_on: [{task: 987654}]\n", ["tasks.1", "exist"]),
    ],
)
def test_a_bad_file_is_one_line_exit_2_and_stores_nothing(
    live_url: str, tmp_path: Path, text: str, needles: list[str]
) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(text, encoding="utf-8")
    code, out, err = tme_cli("task", "create", "--url", live_url, "--file", str(tasks))
    assert_one_line_error(code, err, 2, *needles)
    assert out == "" and _stored(live_url, "fine") == []
