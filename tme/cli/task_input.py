"""What the options and files of `tme task create` and `update` mean as the API's task
fields: the options themselves, their text read (a policy, a schedule, params as
YAML 1.2) and merged into the task's fields, each wrong one a usage error naming it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from tme.cli.common import option, usage_error
from tme.cli.yaml12 import load_yaml
from tme.errors import yaml_problem
from tme.schemas import OPS


def _opt(flag: str, help: str, kind: Any = str) -> Any:
    return Annotated[kind | None, typer.Option(flag, help=help, show_default=False)]


FIELD_OPTIONS = [
    option("name", _opt("--name", "Task name.")),
    option("description", _opt("--description", "Free text.")),
    option("op", _opt("--op", f"{', '.join(OPS)} (default external; shell with --cmd).")),
    option("site", _opt("--site", "Target site.")),
    option("agent", _opt("--agent", "Target agent.")),
    option("device", _opt("--device", "Target device.")),
    option(
        "param",
        _opt(
            "--param", "key=value, repeatable; values are YAML: 5, true, [1, 2], text.", list[str]
        ),
    ),
    option("cmd", _opt("--cmd", "Shell command (op shell).")),
    option("cron", _opt("--cron", "Cron schedule, e.g. '0 6 * * 1-5' or '@daily'.")),
    option("every", _opt("--every", "Run every SECONDS.", float)),
    option("at", _opt("--at", "Run once at an ISO time.")),
    option("timezone", _opt("--timezone", "Time zone of the schedule (default UTC).")),
    option("timeout", _opt("--timeout", "Run timeout in seconds.", float)),
    option(
        "priority",
        _opt(
            "--priority",
            "0 (low) .. 9 (high); a new task has 5. Among runs waiting for the same thing (an"
            " exclusive resource, a device's bus, an agent back online) the higher goes"
            " first, equal ones in the order they came; a running command is never"
            " interrupted (only tme device stop does that).",
            int,
        ),
    ),
    option("retries", _opt("--retries", "Retries after a failed run.", int)),
    option(
        "repeatable",
        Annotated[
            bool | None,
            typer.Option(
                "--repeatable/--not-repeatable",
                help="Its write may be done twice without harm (an absolute setpoint): retry"
                " one that may have reached the device too.",
                show_default=False,
            ),
        ],
    ),
    option("assigned_to", _opt("--assigned-to", "Who is responsible.")),
    option(
        "depends_on",
        _opt(
            "--depends-on",
            "ID[:success|failure|any], repeatable; on update, the whole new list.",
            list[str],
        ),
    ),
    option(
        "resource",
        _opt(
            "--resource",
            "Exclusive resource its runs hold (one run at a time of all naming it),"
            " repeatable; on update, the whole new list.",
            list[str],
        ),
    ),
    option("trigger", _opt("--trigger", "Named trigger that starts it (POST /triggers/NAME).")),
    option(
        "overlap",
        _opt("--overlap", "While a run is active: skip, queue[:MAX_QUEUED] or allow[:MAX]."),
    ),
    option(
        "misfire",
        _opt(
            "--misfire",
            "A late schedule slot: skip or run_once, each [:GRACE_S] (how late still fires).",
        ),
    ),
    option(
        "queue_timeout",
        _opt("--queue-timeout", "A run not started within SECONDS expires.", float),
    ),
    option(
        "deadline", _opt("--deadline", "Bound on a run and its retries, from the first.", float)
    ),
]
UPDATE_OPTIONS = [p for p in FIELD_OPTIONS if p.name != "op"]  # a task's op never changes
# Options copied to the body under the field name the API uses.
_PLAIN = {
    "name": "name",
    "description": "description",
    "op": "op",
    "cmd": "cmd",
    "timeout": "timeout_s",
    "priority": "priority",
    "assigned_to": "assigned_to",
    "trigger": "trigger",
    "queue_timeout": "queue_timeout_s",
    "deadline": "deadline_s",
}


def task_fields(opts: dict[str, Any], base: dict[str, Any], item: str = "") -> dict[str, Any]:
    """The fields the options change, merged into `base` (the file or current task;
    `item` names it in an error: "task 2 of --file: ")."""
    fields = {_PLAIN[k]: v for k, v in opts.items() if k in _PLAIN and v is not None}
    if "op" in opts and opts["cmd"] and not opts["op"] and base.get("op") in (None, "external"):
        fields["op"] = "shell"  # the seed's tasks were shell commands given by `cmd`
    merged = {
        "target": _merge(base.get("target"), site=opts["site"], agent=opts["agent"],
                         device=opts["device"]),
        "params": params_given(opts["param"] or [], base.get("params")),
        "schedule": _schedule(opts, base.get("schedule"), item),
        "retries": _merge(base.get("retries"), max=opts["retries"],
                          repeatable=opts["repeatable"]),
        "depends_on": [_dependency(d) for d in opts["depends_on"] or []] or None,
        "resources": list(opts["resource"]) if opts.get("resource") else None,
        "overlap": _policy("--overlap", opts["overlap"], base.get("overlap"),
                           {"skip": None, "queue": "max_queued", "allow": "max"}, int),
        "misfire": _policy("--misfire", opts["misfire"], base.get("misfire"),
                           {"skip": "grace_s", "run_once": "grace_s"}, float),
    }  # fmt: skip
    fields.update({k: v for k, v in merged.items() if v is not None})
    return fields


def _merge(base: dict[str, Any] | None, **given: Any) -> dict[str, Any] | None:
    changes = {k: v for k, v in given.items() if v is not None}
    return {**(base or {}), **changes} if changes else None


def _policy(
    flag: str,
    text: str | None,
    base: dict[str, Any] | None,
    policies: dict[str, str | None],
    kind: type[int] | type[float],
) -> dict[str, Any] | None:
    """`policy` or `policy:N` merged into the task's current setting: N is the field
    `policies` names for the policy (the allow policy's max, the queue's max_queued, the
    misfire grace; None: it takes none); the API checks the ranges."""
    if text is None:
        return None
    policy, sep, raw = text.partition(":")
    if policy not in policies:
        takes = ", ".join(f"{p}[:{n}]" if n else p for p, n in policies.items())
        usage_error(f"{flag} {text!r}: expected one of {takes}")
    number = policies[policy]
    given: dict[str, Any] = {"policy": policy}
    if sep and number is None:
        usage_error(f"{flag} {text!r}: {policy} takes no number")
    if sep and number is not None:
        try:
            given[number] = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number of seconds"
            usage_error(f"{flag} {text!r}: {raw!r} after ':' is not {what} ({number})")
    return {**(base or {}), **given}


def check_params(pairs: list[str]) -> None:
    """Refuse a --param YAML cannot read, before anything is sent."""
    params_given(pairs, None)


def params_given(pairs: list[str], base: dict[str, Any] | None) -> dict[str, Any] | None:
    """The params the --param key=value pairs give (each value read as YAML) over `base`
    (a task file's); None when none is given. A pair that is no key=value, or a key
    given twice, is a usage error."""
    if not pairs:
        return None
    params = dict(base or {})
    given: dict[str, str] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            usage_error(f"--param {pair!r}: expected key=value")
        if key.strip() in given:  # the last one won, unseen; a task file refuses it too
            usage_error(
                f"--param {key.strip()}: given twice ({given[key.strip()]!r}, then {pair!r}):"
                " give it once"
            )
        given[key.strip()] = pair
        params[key.strip()] = _param_value(key.strip(), raw)
    return params


def _param_value(key: str, raw: str) -> Any:
    """'12' -> 12, 'true' -> True, '1.5' -> 1.5, '[1, 2]' -> a list; words stay text (ON
    too). Text YAML cannot read ('[1, 2', '{a: 1') is refused: it was sent as that text,
    which the op then took or refused far from the typo."""
    if not raw.strip():
        return raw
    try:
        value = load_yaml(raw)
    except yaml.YAMLError as exc:
        as_text = shlex.quote(f"{key}={json.dumps(raw, ensure_ascii=False)}")
        usage_error(
            f"--param {key}: {raw!r} is not valid YAML ({yaml_problem(exc)}); to send it"
            f" as text, quote it: --param {as_text}"
        )
    if value is None and raw.strip() not in EXPLICIT_NULLS:
        return raw  # 'note=#1' is a YAML comment, nothing: the text was meant
    return value


EXPLICIT_NULLS = frozenset({"null", "Null", "NULL", "~"})


def _schedule(
    opts: dict[str, Any], base: dict[str, Any] | None, item: str = ""
) -> dict[str, Any] | None:
    kinds = {"cron": opts["cron"], "every_s": opts["every"], "at": opts["at"]}
    given = {k: v for k, v in kinds.items() if v is not None}
    timezone = opts["timezone"]
    if not given and timezone is None:
        return None
    if not given and not base:
        usage_error(f"{item}--timezone needs --cron, --every or --at (it has no schedule)")
    schedule = given or {k: v for k, v in (base or {}).items() if k in kinds and v is not None}
    zone = timezone or (base or {}).get("timezone")
    return {**schedule, "timezone": zone} if zone else schedule


def _dependency(text: str) -> dict[str, Any]:
    task, _, on = text.partition(":")
    if not task.strip().isdigit() or on not in ("", "success", "failure", "any"):
        usage_error(f"--depends-on {text!r}: expected ID[:success|failure|any]")
    return {"task": int(task), "on": on or "success"}


def load_bodies(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The task bodies in a YAML or JSON file (JSON is YAML), and whether it held many.

    A file holds one task (a mapping of its fields), a list of tasks, or
    `{"tasks": [...]}` (the body of POST /api/v1/tasks/batch).
    """
    try:
        loaded = load_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        usage_error(f"--file {path}: not valid YAML {yaml_problem(exc)}")
    except (OSError, UnicodeDecodeError) as exc:
        usage_error(f"--file {path}: {exc}".splitlines()[0])
    if isinstance(loaded, dict) and set(loaded) == {"tasks"}:
        loaded = loaded["tasks"]
    if isinstance(loaded, dict):
        return [loaded], False
    if not isinstance(loaded, list) or not loaded:
        usage_error(f"--file {path}: expected a mapping of task fields or a list of them")
    for index, item in enumerate(loaded):
        if not isinstance(item, dict):
            usage_error(f"--file {path}: task {index} is not a mapping of task fields")
    return loaded, True


def report_details(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        details = json.loads(text)
    except ValueError as exc:
        usage_error(f"--details is not JSON: {exc}")
    if not isinstance(details, dict):
        usage_error("--details must be a JSON object")
    return details


# What `update --clear` removes: the option's name -> (API field, its empty value).
# The options that set them have no way to say "none" (an empty --cron is no cron).
CLEARABLE: dict[str, tuple[str, Any]] = {
    "schedule": ("schedule", None),
    "depends-on": ("depends_on", []),
    "trigger": ("trigger", None),
    "timeout": ("timeout_s", None),
    "deadline": ("deadline_s", None),
    "queue-timeout": ("queue_timeout_s", None),
    "assigned-to": ("assigned_to", None),
    "resources": ("resources", []),
}
_CLEARED_BY = {"schedule": ("cron", "every", "at", "timezone"), "resources": ("resource",)}


def cleared_fields(names: list[str], opts: dict[str, Any]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for name in names:
        if name not in CLEARABLE:
            usage_error(f"--clear {name!r}: expected one of {', '.join(CLEARABLE)}")
        given = [o for o in _CLEARED_BY.get(name, (name.replace("-", "_"),)) if opts.get(o)]
        if given:
            usage_error(f"--clear {name} and --{given[0].replace('_', '-')} contradict")
        field, empty = CLEARABLE[name]
        changes[field] = empty
    return changes
