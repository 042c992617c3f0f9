"""The envhub image's entry point: ``web``, ``worker`` or ``migrate`` (anything else is run as given).

    web      the dashboard, the REST API, the terminal WebSocket and Reflex's events on one
             port (``--port``, default 3000), serving the frontend built into the image
    worker   an RQ worker with the reconciler and the status watch (``python -m envhub.launcher worker``)
    migrate  apply the database migrations and exit (``python -m envhub.launcher migrate``)

Why ``web`` is not ``reflex run --env prod``: that command compiles the app and
rebuilds the frontend on every start (about 15 s, with bun, the frontend's
node_modules and a writable ``.web``). The image runs ``reflex export
--frontend-only`` once, at build time, so a pod starts what ``reflex run --env
prod`` ends up running anyway: Reflex's production backend (Granian) with that
build mounted, and no compile step. It needs no write access to the image.

``GRANIAN_WORKERS`` (default 1) sets the web's worker processes. Keep it at 1
and scale the web with replicas: a terminal session lives in the process that
started it, and the replicas find it by each pod's one address
(``ENVHUB_INTERNAL_URL``), which two workers of a pod would share.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[2]


def web(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="envhub web")
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104 - the pod's own port
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)

    os.chdir(APP_DIR)  # rxconfig.py and .web/ are found from the working directory
    os.environ.setdefault("GRANIAN_WORKERS", "1")
    os.environ.setdefault("REFLEX_TELEMETRY_ENABLED", "false")
    os.environ.setdefault("REFLEX_CHECK_LATEST_VERSION", "false")
    if os.environ.get("ENVHUB_LOG_FORMAT", "").strip().lower() == "json":
        os.environ.setdefault("REFLEX_LOG_JSON", "true")  # Reflex's and Granian's own lines too
    redis_url = os.environ.get("ENVHUB_REDIS_URL", "")
    if redis_url:
        # Reflex keeps page state in Redis too, so any web replica can serve any browser.
        os.environ.setdefault("REFLEX_REDIS_URL", redis_url)

    from reflex.utils import exec as reflex_exec
    from reflex.utils.prerequisites import get_web_dir
    from reflex_base import constants
    from reflex_base.config import get_config
    from reflex_base.environment import environment

    static = get_web_dir() / constants.Dirs.STATIC
    if not (static / "index.html").is_file() or not (get_web_dir() / "backend").is_dir():
        print(
            f"envhub web: no prebuilt frontend in {APP_DIR / get_web_dir()}; "
            "build the image with deploy/Dockerfile (it runs `reflex export --frontend-only`)",
            file=sys.stderr,
        )
        return 2
    environment.REFLEX_ENV_MODE.set(constants.Env.PROD)
    environment.REFLEX_SKIP_COMPILE.set(True)  # compiled at image build time
    config = get_config()
    config._set_persistent(frontend_port=args.port, backend_port=args.port, backend_host=args.host)
    reflex_exec.run_backend_prod(
        args.host, args.port, config.loglevel.subprocess_level(), mount_frontend_compiled_app=True
    )
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("web", [])
    if command == "web":
        return web(rest)
    os.chdir(APP_DIR)
    if command == "worker":
        argv = [sys.executable, "-m", "envhub.launcher", "worker", *rest]
    elif command == "migrate":
        argv = [sys.executable, "-m", "envhub.launcher", "migrate", *rest]
    # Anything else (a shell, `python -m envhub.launcher ...`) runs as given.
    os.execvp(argv[0], argv)  # noqa: S606 - replaces this process: signals reach the program
    return 127  # not reached: execvp returns only by raising


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
