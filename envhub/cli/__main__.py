"""``python -m envhub.cli`` is the ``envhub`` command."""

from envhub.cli.main import run

run()
