"""The agent's logging: its own lines, and the Modbus library's kept quiet.

pymodbus logs every request that got no answer at ERROR, with a dump of its last frames
on lines of their own ("No response received after 0 retries, continue with next
request", ">>>>> send: 0x0 0x1 ..."), and every reconnect attempt at WARNING: a device
polled every few seconds while it is down fills the agent's log. The Modbus driver
turns each failure into the command's reason and logs the start of an outage once and
its end once (`modbus tcp:HOST:PORT failing: ...`, `... answers again`); `-v` shows
pymodbus again.
"""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
QUIET = {"pymodbus": logging.CRITICAL}


def setup_agent_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=FORMAT)
    if not verbose:
        for name, level in QUIET.items():
            logging.getLogger(name).setLevel(level)
