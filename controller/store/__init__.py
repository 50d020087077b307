"""controller/store."""
