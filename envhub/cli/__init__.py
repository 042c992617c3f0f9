"""The ``envhub`` command: envhub from a terminal, for people, scripts and agents.

It talks to a running envhub over HTTP and the terminal WebSocket only, with
a token from ``envhub login`` (the device flow) or ``ENVHUB_TOKEN``; it never
imports the server's models, services or database (``.importlinter`` checks).
"""
