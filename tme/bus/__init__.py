"""The RabbitMQ layer: `open_bus(url)` gives an amqp:// or memory:// bus."""

from tme.bus.base import Bus, Consumer, Delivery, Handler, Reject, Unroutable
from tme.bus.registry import open_bus

__all__ = ["Bus", "Consumer", "Delivery", "Handler", "Reject", "Unroutable", "open_bus"]
