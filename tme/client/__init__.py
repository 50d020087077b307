"""tme/client."""
