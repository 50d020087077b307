"""The device agent path must stay small: no controller, UI or ORM imports."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("tme.controller", "tme.ui", "sqlmodel", "sqlalchemy", "fastapi", "nicegui")

PROBE = """
import json, sys
import tme.agents.agent, tme.agents.runner, tme.agents.agent_config, tme.drivers.registry
import tme.drivers.builtin
print(json.dumps(sorted(sys.modules)))
"""


def test_agent_imports_nothing_from_the_controller_side() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60
    )
    modules = json.loads(out.stdout)
    assert "tme.agents.agent" in modules
    leaked = [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert leaked == []
