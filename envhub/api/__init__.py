"""HTTP interfaces: the FastAPI app Reflex mounts itself into."""
