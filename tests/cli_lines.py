"""What a CLI command that fails cleanly prints: one error line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import Result

TME = Path(sys.executable).with_name("tme")


def one_line_error(result: Result) -> str:
    """The error line of a command run by CliRunner that failed cleanly (exit 1 by
    SystemExit, not an exception)."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    return lines[0]


def failing_tme(args: list[str], cwd: Path, **env: str) -> tuple[int, str]:
    """(exit code, the one line printed) of `tme *args` run as a process that fails
    without a traceback; `env` is added to this process's environment."""
    done = subprocess.run(
        [str(TME), *args],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "400", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return done.returncode, lines[0]
