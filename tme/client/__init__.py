"""The Python SDK of TME: `Client` (blocking) and `AsyncClient` (asyncio).

with tme.Client("http://controller:8000", token="...") as client:
    task = client.tasks.create(name="read level", op="modbus.read",
                               target={"site": "plant-1", "agent": "skid-a", "device": "tank1"},
                               params={"point": "level"})
    done = client.tasks.wait(task.id, timeout=30)
"""

from tme.client.aio import AsyncClient
from tme.client.sync import Client

__all__ = ["AsyncClient", "Client"]
