"""The `tme` command: one Typer app, one sub-app per resource.

Errors reach the user as one readable line and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from typing import NoReturn

import typer

from tme.cli import (
    access,
    audit_cmd,
    config_cmd,
    db,
    demo,
    edge,
    fleet,
    mqtt_cmd,
    rollout,
    run_cmd,
    serve,
    sim,
    task,
)
from tme.cli.common import fail_with
from tme.cli.output import fail
from tme.errors import TMEError

app = typer.Typer(
    name="tme",
    help="TME: define, schedule and run tasks on machines at remote sites.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(
    task.app,
    name="task",
    help="Create, list, show, update and delete tasks; run, check, pause them; resources.",
)
app.add_typer(config_cmd.app, name="config", help="Show the effective configuration.")
app.add_typer(db.app, name="db", help="Database schema migrations and pruning of old rows.")
app.add_typer(sim.app, name="sim", help="Simulated machines for tests and demos.")
app.add_typer(
    edge.agent_app,
    name="agent",
    help="Run a device agent, list agents, lock a device out at its agent.",
)
app.add_typer(edge.gateway_app, name="gateway", help="Run a site gateway.")
edge.agent_app.command("list")(fleet.list_agents)
app.add_typer(
    fleet.device_app,
    name="device",
    help="List devices and their points, show their values, stop and resume them.",
)
app.add_typer(fleet.site_app, name="site", help="List sites.")
app.add_typer(
    run_cmd.run_app, name="run", help="Show, cancel and retry runs; show or cancel workflow runs."
)
app.add_typer(run_cmd.trigger_app, name="trigger", help="Fire named triggers.")
app.add_typer(
    rollout.app,
    name="rollout",
    help="Run one device op on many matching devices, a few at a time: preview, create,"
    " list, show, cancel.",
)
app.add_typer(access.user_app, name="user", help="Users and roles (works on the database).")
app.add_typer(access.token_app, name="token", help="API tokens (works on the database).")
app.add_typer(audit_cmd.app, name="audit", help="Verify and read the audit log.")
app.add_typer(mqtt_cmd.app, name="mqtt", help="Mosquitto password and ACL files for a site.")
serve.register(app)
demo.register(app)


def _reflowed_help(group: typer.Typer) -> None:
    """A command's help is its docstring, whose lines break where the source's do: typer
    keeps those breaks, so in a terminal narrower than the source a sentence broke in
    the middle, and in the group's list (`tme task --help`) a summary ran over several
    short lines ("...(a dry run): the" / "envelope, ..."). Each paragraph is joined into
    one line, for the terminal to wrap; the first is the command's summary."""
    for info in group.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None) or ""
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n")]
        if text:
            info.help = "\n\n".join(p for p in paragraphs if p)
            info.short_help = info.short_help or paragraphs[0]
    for sub in group.registered_groups:
        if sub.typer_instance is not None:
            _reflowed_help(sub.typer_instance)


_reflowed_help(app)


def run() -> None:
    """Console-script entry point."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:  # click's errors: a usage error, a bad value
        _usage_error(exc)
    except typer.Abort:
        fail("aborted")
    except TMEError as exc:  # one raised outside a command's cli_errors
        fail_with(exc)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


def _usage_error(exc: Exception) -> NoReturn:
    """One line and exit 2, as every other error of the CLI, where typer drew a box of
    six lines around it (a script reading the last line of stderr got its border)."""
    code = int(getattr(exc, "exit_code", 2))
    if type(exc).__name__ == "NoArgsIsHelpError":  # `tme task`: the help is the answer
        show: Callable[[], None] = exc.show  # type: ignore[attr-defined]
        show()
        sys.exit(code)
    ctx = getattr(exc, "ctx", None)
    message = getattr(exc, "format_message", lambda: str(exc))()
    see = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    fail(" ".join(str(message).split()) + see, code)


if __name__ == "__main__":
    run()
