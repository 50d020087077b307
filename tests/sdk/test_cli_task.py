"""`tme task ...` end to end: the CLI talks to a running controller over HTTP."""

from __future__ import annotations

import itertools
import json
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tme
from tme.cli.main import app

runner = CliRunner()


def tme_cli(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def unique() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def assert_one_line_error(code: int, stderr: str, expected_code: int, *needles: str) -> None:
    assert code == expected_code, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0]


def test_create_prints_id_and_sends_every_option(live_url: str, tmp_path: Path) -> None:
    with tme.Client(live_url) as client:
        before = client.tasks.create(name=unique()).id
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", "set pump", "--op", "modbus.write",
        "--site", "plant-1", "--agent", "skid-a", "--device", "pump1",
        "--param", "point=speed_setpoint", "--param", "value=1200", "--param", "verify=true",
        "--cron", "0 6 * * 1-5", "--timezone", "Europe/Berlin", "--timeout", "30",
        "--retries", "2", "--priority", "7", "--assigned-to", "ops",
        "--depends-on", f"{before}:any", "--description", "morning start-up",
    )  # fmt: skip
    assert code == 0, err
    with tme.Client(live_url) as client:
        task = client.tasks.get(int(out.strip()))
    assert task.params == {"point": "speed_setpoint", "value": 1200, "verify": True}
    assert task.target is not None and task.target.device == "pump1"
    assert task.schedule is not None
    assert (task.schedule.cron, task.schedule.timezone) == ("0 6 * * 1-5", "Europe/Berlin")
    assert [(d.task, d.on) for d in task.depends_on] == [(before, "any")]
    assert (task.timeout_s, task.retries.max, task.priority) == (30, 2, 7)
    assert (task.assigned_to, task.description) == ("ops", "morning start-up")


def test_create_and_update_set_the_run_policies(live_url: str) -> None:
    """Trigger, overlap, misfire, queue timeout and deadline from the command line."""
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", unique(), "--trigger", "batch-end",
        "--overlap", "allow:3", "--misfire", "run_once:300", "--queue-timeout", "90",
        "--deadline", "3600", "--cron", "0 6 * * *",
    )  # fmt: skip
    assert code == 0, err
    task_id = int(out.strip())
    with tme.Client(live_url) as client:
        task = client.tasks.get(task_id)
    assert task.trigger == "batch-end"
    assert (task.overlap.policy, task.overlap.max) == ("allow", 3)
    assert (task.misfire.policy, task.misfire.grace_s) == ("run_once", 300)
    assert (task.queue_timeout_s, task.deadline_s) == (90, 3600)
    code, _, err = tme_cli(
        "task", "update", str(task_id), "--url", live_url, "--overlap", "queue:3"
    )
    assert code == 0, err
    with tme.Client(live_url) as client:
        task = client.tasks.get(task_id)
    assert (task.overlap.policy, task.overlap.max_queued) == ("queue", 3)
    code, _, err = tme_cli("task", "update", str(task_id), "--url", live_url, "--overlap", "many")
    assert_one_line_error(code, err, 2, "--overlap 'many'", "skip, queue[:max_queued], allow[:max]")
    code, _, err = tme_cli("task", "update", str(task_id), "--url", live_url, "--overlap", "skip:2")
    assert_one_line_error(code, err, 2, "--overlap 'skip:2'", "skip takes no number")
    code, _, err = tme_cli("task", "update", str(task_id), "--url", live_url, "--misfire", "skip:x")
    assert_one_line_error(code, err, 2, "--misfire 'skip:x'", "grace_s")
    # "is not a int (max_queued)", "is not a float (grace_s)": what the number is, in words
    code, _, err = tme_cli(
        "task", "update", str(task_id), "--url", live_url, "--overlap", "queue:x"
    )
    assert_one_line_error(
        code, err, 2, "--overlap 'queue:x'", "'x' after ':' is not a whole number (max_queued)"
    )
    code, _, err = tme_cli("task", "update", str(task_id), "--url", live_url, "--misfire", "skip:x")
    assert_one_line_error(code, err, 2, "'x' after ':' is not a number of seconds (grace_s)")


def test_param_words_stay_words_and_only_true_false_are_booleans(
    live_url: str, tmp_path: Path
) -> None:
    """YAML 1.1 reads ON, off, yes and no as booleans: `args=[ON]` sent true, which a
    choice of "ON"/"OFF" refuses. Values are read as YAML 1.2 (and JSON) read them."""
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", "output on", "--op", "serial.command",
        "--site", "plant-1", "--agent", "bench", "--device", "meter",
        "--param", "command=output", "--param", "args=[ON, off, yes, true, 2]",
    )  # fmt: skip
    assert code == 0, err
    task_file = tmp_path / "task.yaml"
    task_file.write_text(
        "name: output off\nop: serial.command\n"
        "target: {site: plant-1, agent: bench, device: meter}\n"
        "params: {command: output, args: [OFF]}\n"
    )
    code2, out2, err2 = tme_cli("task", "create", "--url", live_url, "--file", str(task_file))
    assert code2 == 0, err2
    with tme.Client(live_url) as client:
        by_option = client.tasks.get(int(out.strip()))
        by_file = client.tasks.get(int(out2.strip()))
    assert by_option.params["args"] == ["ON", "off", "yes", True, 2]
    assert by_file.params["args"] == ["OFF"]


def test_param_numbers_are_read_as_yaml_1_2_reads_them(live_url: str, tmp_path: Path) -> None:
    """YAML 1.1 read `12:30` as 750 (base 60) and `010` as 8 (octal): a time or a zero-padded
    number reached the device as another number, with no error."""
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", unique(),
        "--param", "at=12:30", "--param", "code=010", "--param", "big=1e3",
        "--param", "hex=0x1F", "--param", "list=[07:05, 010, 1_000]",
    )  # fmt: skip
    assert code == 0, err
    task_file = tmp_path / "task.yaml"
    task_file.write_text(f"name: {unique()}\nparams: {{at: 12:30, code: 010}}\n")
    code2, out2, err2 = tme_cli("task", "create", "--url", live_url, "--file", str(task_file))
    assert code2 == 0, err2
    with tme.Client(live_url) as client:
        by_option = client.tasks.get(int(out.strip())).params
        by_file = client.tasks.get(int(out2.strip())).params
    assert by_option == {
        "at": "12:30", "code": 10, "big": 1000.0, "hex": 31, "list": ["07:05", 10, "1_000"]
    }  # fmt: skip
    assert by_file == {"at": "12:30", "code": 10}


def test_create_from_file_with_override_and_json(live_url: str, tmp_path: Path) -> None:
    body = tmp_path / "task.yaml"
    body.write_text(
        "name: from file\nop: sleep\ntarget: {site: s1, agent: a1}\nparams: {seconds: 5}\n",
        encoding="utf-8",
    )
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--file", str(body), "--param", "seconds=2", "--json"
    )
    assert code == 0, err
    task = json.loads(out)
    assert (task["name"], task["op"], task["params"]) == ("from file", "sleep", {"seconds": 2})


def test_create_with_a_cron_nickname(live_url: str) -> None:
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", "nightly", "--cron", "@daily", "--json"
    )
    assert code == 0, err
    task = json.loads(out)
    assert task["schedule"]["cron"] == "@daily"
    fires = [datetime.fromisoformat(t) for t in task["next_fire_times"]]
    assert len(fires) == 3 and all((t.hour, t.minute) == (0, 0) for t in fires), fires
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(fires)] == [86400, 86400]


def test_idempotency_key_on_the_command_line(live_url: str) -> None:
    key, name = uuid.uuid4().hex, unique()
    first = tme_cli("task", "create", "--url", live_url, "--name", name, "--idempotency-key", key)
    again = tme_cli("task", "create", "--url", live_url, "--name", name, "--idempotency-key", key)
    assert first[0] == again[0] == 0 and first[1] == again[1]
    code, _, err = tme_cli(
        "task", "create", "--url", live_url, "--name", name + "x", "--idempotency-key", key
    )
    assert_one_line_error(code, err, 1, "conflict")


def test_list_and_show_tables_and_json(live_url: str) -> None:
    marker = unique()
    with tme.Client(live_url) as client:
        ids = [client.tasks.create(name=f"{marker}-{i}").id for i in range(3)]
        client.tasks.report(ids[0], "complete", log="ok")

    code, out, err = tme_cli("task", "list", "--url", live_url, "--search", marker, "--json")
    assert code == 0, err
    assert sorted(t["id"] for t in json.loads(out)) == sorted(ids)

    code, out, _ = tme_cli("task", "list", "--url", live_url, "--search", marker, "--limit", "2")
    assert code == 0 and "Tasks" in out and marker in out

    code, out, err = tme_cli("task", "show", str(ids[0]), "--url", live_url, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert shown["task"]["id"] == ids[0]
    assert [r["state"] for r in shown["runs"]] == ["succeeded"]

    code, out, _ = tme_cli("task", "show", str(ids[0]), "--url", live_url)
    assert code == 0 and "Latest runs" in out and "succeeded" in out


def test_update_fields_and_report_status(live_url: str) -> None:
    with tme.Client(live_url) as client:
        task = client.tasks.create(name=unique(), target={"site": "s1"}, params={"a": 1})
    code, out, err = tme_cli(
        "task", "update", str(task.id), "--url", live_url, "--agent", "ag1",
        "--param", "b=2.5", "--every", "30", "--json",
    )  # fmt: skip
    assert code == 0, err
    changed = json.loads(out)
    assert changed["target"] == {"site": "s1", "agent": "ag1", "device": None}
    assert changed["params"] == {"a": 1, "b": 2.5}
    assert changed["schedule"]["every_s"] == 30

    code, out, err = tme_cli(
        "task", "update", str(task.id), "--url", live_url,
        "--status", "fail", "--log", "jammed", "--details", '{"code": 7}',
    )  # fmt: skip
    assert code == 0 and "failed" in out, err
    with tme.Client(live_url) as client:
        run = next(client.tasks.runs(task.id))
        assert client.runs.get(run.id).result == {"code": 7}

    code, out, _ = tme_cli("task", "wait", str(task.id), "--url", live_url, "--timeout", "5")
    assert code == 1 and "failed" in out  # a failed task is a failed wait


def test_run_show_names_its_workflow_run_and_cause(live_url: str) -> None:
    with tme.Client(live_url) as client:
        task = client.tasks.create(name=unique())
        run_id = next(client.tasks.runs(task.id)).id
    code, out, err = tme_cli("run", "show", run_id, "--url", live_url)
    assert code == 0, err
    assert f"workflow run {run_id}, cause: created" in out
    code, out, err = tme_cli("run", "show", run_id, "--url", live_url, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert (shown["workflow_id"], shown["cause"]) == (run_id, "created")


def test_delete_asks_unless_yes(live_url: str) -> None:
    with tme.Client(live_url) as client:
        task_id = client.tasks.create(name=unique()).id
    code, _, _ = tme_cli("task", "delete", str(task_id), "--url", live_url, input="n\n")
    assert code == 1
    code, out, _ = tme_cli("task", "delete", str(task_id), "--url", live_url, "--yes")
    assert code == 0 and "deleted" in out
    code, _, err = tme_cli("task", "show", str(task_id), "--url", live_url)
    assert_one_line_error(code, err, 1, str(task_id), "not_found")


DEVICE_ARGS = ["--name", "x", "--site", "s", "--agent", "a", "--device", "d"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--name", ""], ["name"]),
        (["--name", "x", "--priority", "12"], ["priority"]),
        (["--name", "x", "--param", "novalue"], ["--param", "key=value"]),
        (["--name", "x", "--depends-on", "abc:maybe"], ["--depends-on"]),
        (["--name", "x", "--op", "modbus.read"], ["target"]),
        (["--name", "x", "--cron", "not a cron"], ["schedule", "cron"]),
        (["--name", "x", "--cron", "@reboot"], ["invalid request: schedule.cron: ", "@daily"]),
        (
            ["--name", "x", "--at", "2020-01-01T00:00:00"],
            ["error: invalid request: schedule.at: ", "would never run"],
        ),
        (["--name", "x", "--depends-on", "987654"], ["depends_on.0.task", "does not exist"]),
        (["--name", "x", "--resource", "tank 1"], ["invalid request: resources.0: "]),
        (["--name", "x", "--resource", "t", "--resource", "t"], ["resources", "t more than once"]),
        (
            [*DEVICE_ARGS, "--op", "serial.command", "--param", "command=C", "--param", "args=12"],
            ["error: invalid request: params.args: Input should be a valid list"],
        ),
        (
            [*DEVICE_ARGS, "--op", "modbus.write", "--param", "point=p", "--param", "value=fast"],
            ["error: invalid request: params.value: Input should be a number or true/false"],
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    live_url: str, args: list[str], needles: list[str]
) -> None:
    code, out, err = tme_cli("task", "create", "--url", live_url, *args)
    assert_one_line_error(code, err, 2, *needles)
    assert out == ""


def test_bad_file_and_details_are_usage_errors(live_url: str, tmp_path: Path) -> None:
    code, _, err = tme_cli("task", "create", "--url", live_url, "--file", str(tmp_path / "no.yaml"))
    assert_one_line_error(code, err, 2, "--file")
    code, _, err = tme_cli("task", "update", "1", "--url", live_url, "--status", "fail",
                           "--details", "[1]")  # fmt: skip
    assert_one_line_error(code, err, 2, "--details")


def test_a_file_that_is_not_yaml_names_where_and_what(live_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: pump\nparams: {point: speed, value: [1, 2\n")
    code, _, err = tme_cli("task", "create", "--url", live_url, "--file", str(broken))
    assert_one_line_error(code, err, 2, f"--file {broken}: not valid YAML at line 3, column 1")
    assert "while parsing a flow sequence" in err


def test_a_task_file_with_a_key_twice_is_refused(closed_port_url: str, tmp_path: Path) -> None:
    # The second `params:` replaced the first: a write went out without its `verify`.
    twice = tmp_path / "twice.yaml"
    twice.write_text("name: pump\nparams: {point: speed, verify: true}\nparams: {value: 9}\n")
    code, _, err = tme_cli("task", "create", "--url", closed_port_url, "--file", str(twice))
    assert_one_line_error(
        code, err, 2, f"--file {twice}: not valid YAML at line 3, column 1: found key 'params'"
    )


@pytest.mark.parametrize("command", [["create", "--name", "x"], ["update", "1"]])
@pytest.mark.parametrize(
    ("pair", "as_text"), [("x=[1, 2", "'x=\"[1, 2\"'"), ("y={a: 1", "'y=\"{a: 1\"'")]
)
def test_a_param_yaml_cannot_read_is_refused_before_anything_is_sent(
    closed_port_url: str, command: list[str], pair: str, as_text: str
) -> None:
    # It was sent as the text '[1, 2', which the op then took or refused far from the typo.
    # Nothing listens at the URL: an error about the server would mean it tried to send.
    code, out, err = tme_cli("task", *command, "--url", closed_port_url, "--param", pair)
    key, _, value = pair.partition("=")
    assert_one_line_error(
        code, err, 2, f"--param {key}: {value!r} is not valid YAML", f"quote it: --param {as_text}"
    )
    assert out == ""


@pytest.mark.parametrize("command", [["create", "--name", "x"], ["update", "7"]])
def test_a_param_given_twice_is_refused_before_anything_is_sent(
    closed_port_url: str, command: list[str]
) -> None:
    # The last one won unseen (value=1200 --param value=12000 typed for a correction);
    # a task file refuses a key given twice too.
    args = ["--param", "value=1200", "--param", "verify=true", "--param", "value=120"]
    code, out, err = tme_cli("task", *command, "--url", closed_port_url, *args)
    assert_one_line_error(
        code, err, 2, "--param value: given twice ('value=1200', then 'value=120'): give it once"
    )
    assert out == ""


def test_a_quoted_param_is_text_and_a_word_stays_one(live_url: str) -> None:
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", unique(),
        "--param", 'x="[1, 2"', "--param", "mode=auto", "--param", "note=#1",
        "--param", "none=null",
    )  # fmt: skip
    assert code == 0, err
    with tme.Client(live_url) as client:
        params = client.tasks.get(int(out.strip())).params
    # '#1' is a YAML comment: read as YAML it was nothing (null), where "#1" was meant
    assert params == {"x": "[1, 2", "mode": "auto", "note": "#1", "none": None}


def test_unreachable_server_is_one_line_and_exit_1(closed_port_url: str) -> None:
    for args in (["list"], ["show", "1"], ["create", "--name", "x"], ["delete", "1", "--yes"]):
        code, _, err = tme_cli("task", *args, "--url", closed_port_url)
        assert_one_line_error(code, err, 1, "cannot reach TME", closed_port_url)


def test_url_from_environment(live_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TME_URL", live_url)
    code, out, err = tme_cli("task", "list", "--json")
    assert code == 0, err
    assert isinstance(json.loads(out), list)


def test_list_with_a_mistyped_status_is_a_usage_error(live_url: str) -> None:
    with tme.Client(live_url) as client:
        client.tasks.create(name=unique())
    code, out, err = tme_cli("task", "list", "--url", live_url, "--status", "runing")
    assert_one_line_error(code, err, 2, "status", "'runing'", 'did you mean "running"')
    assert out == ""


def test_list_with_an_unknown_op_shows_the_servers_refusal(live_url: str) -> None:
    """The server refuses an op no task can have (it answered an empty list): one line
    naming the option's parameter and the ops there are."""
    code, out, err = tme_cli("task", "list", "--url", live_url, "--op", "modbus.reed")
    assert_one_line_error(code, err, 2, "op", "'modbus.read'", "'serial.command'")
    assert out == ""


def test_list_with_a_negative_limit_is_a_usage_error(live_url: str) -> None:
    code, out, err = tme_cli("task", "list", "--url", live_url, "--limit", "-5")
    assert code == 2 and "--limit" in err and out == ""


def test_update_clear_removes_a_schedule_trigger_and_dependencies(live_url: str) -> None:
    # No option could say "none": an empty --cron is a bad cron, so a task's schedule,
    # trigger or dependencies could be removed only through the API.
    with tme.Client(live_url) as client:
        first = client.tasks.create(name=unique()).id
        task = client.tasks.create(
            name=unique(), schedule={"cron": "@daily"}, trigger=unique(), timeout_s=5,
            depends_on=[{"task": first, "on": "any"}],
        )  # fmt: skip
    code, _, err = tme_cli(
        "task", "update", str(task.id), "--url", live_url, "--clear", "schedule",
        "--clear", "trigger", "--clear", "depends-on", "--clear", "timeout",
    )  # fmt: skip
    assert code == 0, err
    with tme.Client(live_url) as client:
        after = client.tasks.get(task.id)
    cleared = (after.schedule, after.trigger, after.depends_on, after.timeout_s)
    assert cleared == (None, None, [], None)
    assert after.next_fire_times == []
    code, _, err = tme_cli("task", "update", str(task.id), "--url", live_url,
                           "--clear", "schedule", "--every", "60")  # fmt: skip
    assert_one_line_error(code, err, 2, "--clear schedule and --every contradict")


def test_a_timezone_for_a_file_task_without_a_schedule_names_the_task(
    live_url: str, tmp_path: Path
) -> None:
    tasks = tmp_path / "tasks.yaml"
    tasks.write_text(
        "- {name: morning flush, schedule: {cron: '0 6 * * *'}}\n- {name: report by hand}\n"
    )
    code, _, err = tme_cli(
        "task", "create", "--url", live_url, "--file", str(tasks), "--timezone", "Europe/Berlin"
    )
    assert_one_line_error(
        code, err, 2, "task 1 of --file: --timezone needs --cron, --every or --at"
    )


def test_resources_are_set_shown_changed_and_cleared(live_url: str) -> None:
    code, out, err = tme_cli("task", "create", "--url", live_url, "--name", unique(),
                             "--resource", "tank1", "--resource", "cell-a")  # fmt: skip
    assert code == 0, err
    task_id = out.strip()
    with tme.Client(live_url) as client:
        assert client.tasks.get(int(task_id)).resources == ["tank1", "cell-a"]
    code, out, err = tme_cli("task", "show", task_id, "--url", live_url)
    assert code == 0, err
    assert any("resources" in line and '["tank1", "cell-a"]' in line for line in out.splitlines())
    code, _, err = tme_cli("task", "update", task_id, "--url", live_url, "--resource", "tank2")
    assert code == 0, err
    with tme.Client(live_url) as client:
        assert client.tasks.get(int(task_id)).resources == ["tank2"]
    code, _, err = tme_cli("task", "update", task_id, "--url", live_url, "--clear", "resources")
    assert code == 0, err
    with tme.Client(live_url) as client:
        assert client.tasks.get(int(task_id)).resources == []
    code, _, err = tme_cli("task", "update", task_id, "--url", live_url, "--clear", "resources",
                           "--resource", "tank3")  # fmt: skip
    assert_one_line_error(code, err, 2, "--clear resources and --resource contradict")


def test_repeatable_sets_the_retries_of_a_write_and_update_keeps_max(live_url: str) -> None:
    code, out, err = tme_cli(
        "task", "create", "--url", live_url, "--name", unique(), "--op", "modbus.write",
        "--site", "s1", "--agent", "a1", "--device", "pump1",
        "--param", "point=speed_setpoint", "--param", "value=1200",
        "--retries", "2", "--repeatable",
    )  # fmt: skip
    assert code == 0, err
    task_id = int(out.strip())
    with tme.Client(live_url) as client:
        retries = client.tasks.get(task_id).retries
        assert (retries.max, retries.repeatable) == (2, True)
        code, _, err = tme_cli(
            "task", "update", str(task_id), "--url", live_url, "--not-repeatable"
        )
        assert code == 0, err
        retries = client.tasks.get(task_id).retries
        assert (retries.max, retries.repeatable) == (2, False)
