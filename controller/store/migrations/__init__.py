"""controller/store/migrations."""
