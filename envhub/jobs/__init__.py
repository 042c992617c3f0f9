"""RQ entry points: thin, idempotent, taking ids, opening their own sessions."""
