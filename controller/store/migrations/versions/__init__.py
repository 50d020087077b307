"""controller/store/migrations/versions."""
