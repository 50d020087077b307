"""Run `python -m tme.agents` and, on SIGUSR1, write len(sys.modules) to a file.

Used by bench_agent_rss: `python agent_probe.py OUT_FILE -c agent.yaml`. The handler
is installed before the agent imports anything and imports nothing itself, so the
agent process measured is the plain one.
"""

import signal
import sys


def _write_module_count(*_args: object) -> None:
    with open(OUT, "w") as out:
        out.write(f"{len(sys.modules)}\n")


OUT = sys.argv.pop(1)
signal.signal(signal.SIGUSR1, _write_module_count)
sys.argv[0] = "python -m tme.agents"

from tme.agents.__main__ import main  # noqa: E402  (after the handler, by design)

main()
