"""tme/cli."""
