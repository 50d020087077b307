"""tme/bus."""
