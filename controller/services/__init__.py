"""controller/services."""
