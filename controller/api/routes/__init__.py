"""controller/api/routes."""
