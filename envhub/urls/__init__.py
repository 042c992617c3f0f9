"""Public URLs of environments (the port and its adapters)."""
