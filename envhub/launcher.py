"""``python -m envhub.launcher``: run envhub on its embedded default.

``run`` migrates the database, starts an embedded Redis when ENVHUB_REDIS_URL
is unset, an RQ worker (with the reconciler) and the Reflex app, prints the
dashboard URL and waits. Ctrl-C (or SIGTERM) stops every child it started and
the local environments' processes; their desired state stays in the database,
so the next start brings them back.

Without OpenID Connect envhub is single-user: it listens on 127.0.0.1 only and
``run`` prints a one-time login link (``login-link`` prints a fresh one).
``audit verify`` checks the audit log's hash chain (every event; with
``--incremental`` only those after the last intact check).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from sqlmodel import Session

from envhub import logs
from envhub.config import PROJECT_ROOT, AuthMode, Settings, check_bind, load_settings, redact_url
from envhub.errors import ConfigurationError
from envhub.private_files import open_private, private_dir, secure_data_dir, write_private
from envhub.queue.embedded import answers
from envhub.queue.embedded import prepare as prepare_embedded_redis
from envhub.queue.embedded import redis_binary as redis_binary  # re-exported for the tests

log = logging.getLogger("envhub.launcher")


def migrate(settings: Settings) -> None:
    from alembic import command
    from alembic.config import Config

    from envhub.config import override_settings
    from envhub.models.db import engine_for
    from envhub.services.audit_chain import seal_legacy_rows

    secure_data_dir(settings.data_dir)
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = settings.database_url
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")
    # Audit rows from before the hash chain get their MACs now (it needs the key).
    with override_settings(settings), Session(engine_for(settings.database_url)) as session:
        seal_legacy_rows(session)


def login_link(settings: Settings) -> str:
    from envhub.config import override_settings
    from envhub.models.db import engine_for
    from envhub.services.signin import issue_login_link

    if settings.auth_mode is not AuthMode.local:
        raise ConfigurationError(
            "login links are for single-user mode; people sign in with OpenID Connect here",
            hint=f"Open {settings.base_url}/sign-in",
        )
    with override_settings(settings), Session(engine_for(settings.database_url)) as session:
        return issue_login_link(session)


def audit_verify(settings: Settings, *, incremental: bool = False) -> int:
    """Check the audit chain (all of it, or from the last checkpoint); 1 when broken."""
    from envhub.config import override_settings
    from envhub.domain.principals import SYSTEM
    from envhub.models.db import engine_for
    from envhub.services.audit_chain import CheckMode, run_check

    mode = CheckMode.incremental if incremental else CheckMode.full
    with override_settings(settings), Session(engine_for(settings.database_url)) as session:
        report = run_check(session, actor=SYSTEM, mode=mode)
    print(f"envhub: {report.summary()}")
    for problem in report.problems:
        where = (
            f"#{problem.seq}"
            if problem.seq is not None
            else f"id {problem.event_id}"
            if problem.event_id
            else "chain"
        )
        print(f"  {problem.kind:<9} {where:<10} {problem.message}")
    return 0 if report.ok else 1


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_for(check: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive():
            raise RuntimeError(f"{what} exited during start-up")
        time.sleep(0.25)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


class Supervisor:
    """Starts children in their own process groups and stops them all on exit."""

    def __init__(self, run_dir: Path) -> None:
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.run_dir = run_dir
        self.pid_file = run_dir / "envhub.pid"

    def claim(self) -> None:
        private_dir(self.run_dir)
        if self.pid_file.exists():
            with suppress(ValueError):
                pid = int(self.pid_file.read_text().strip())
                if pid != os.getpid() and _alive(pid):
                    raise ConfigurationError(
                        f"envhub is already running (pid {pid}); stop it first",
                        hint=f"kill {pid}, or remove {self.pid_file} if that process is not envhub",
                    )
            log.info("removing stale pid file %s", self.pid_file)
        write_private(self.pid_file, str(os.getpid()))

    def start(
        self, name: str, argv: list[str], *, env: dict[str, str], log_file: Path | None = None
    ) -> subprocess.Popen[bytes]:
        out = open_private(log_file, "ab") if log_file else None
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=PROJECT_ROOT,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
        self.children.append((name, proc))
        return proc

    def stop(self) -> None:
        for _name, proc in reversed(self.children):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, proc in reversed(self.children):
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.children.clear()
        with suppress(FileNotFoundError):
            if self.pid_file.read_text().strip() == str(os.getpid()):
                self.pid_file.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback URL we built
            return bool(response.status == 200)
    except OSError:
        return False


def start_embedded_redis(
    supervisor: Supervisor,
    data_dir: Path,
    *,
    env: dict[str, str],
    logs_dir: Path,
    binary: str | None = None,
) -> str:
    """Start the embedded Redis (see envhub/queue/embedded.py); returns its URL, password included."""
    from envhub.runtime.local.processes import free_port

    embedded = prepare_embedded_redis(data_dir, port=free_port(), binary=binary)
    proc = supervisor.start("redis", embedded.argv, env=env, log_file=logs_dir / "redis.log")
    wait_for(
        lambda: answers(embedded.url),
        timeout=20,
        what="embedded redis",
        alive=lambda: proc.poll() is None,
    )
    print(f"envhub: embedded redis ({embedded.argv[0]}) on 127.0.0.1:{embedded.port}", flush=True)
    return embedded.url


def run(args: argparse.Namespace) -> int:
    from envhub.runtime.local.processes import free_port

    settings = load_settings()
    port = settings.base_port
    host = args.host
    check_bind(host, settings)
    if not port_free(port):
        raise ConfigurationError(
            f"ENVHUB_BASE_URL: port {port} is already in use",
            hint="Stop whatever uses it, or set ENVHUB_BASE_URL=http://localhost:<free port>.",
        )
    secure_data_dir(settings.data_dir)
    run_dir = settings.data_dir / "run"
    logs_dir = private_dir(settings.data_dir / "logs")
    supervisor = Supervisor(run_dir)
    supervisor.claim()

    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background leaves
    # SIGINT ignored, and Ctrl-C must always stop everything we started.
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    env = dict(os.environ)
    env.update(
        REFLEX_TELEMETRY_ENABLED="false",
        REFLEX_CHECK_LATEST_VERSION="false",
        PYTHONUNBUFFERED="1",
        ENVHUB_DATA_DIR=str(settings.data_dir),
        ENVHUB_DATABASE_URL=settings.database_url,
        ENVHUB_BASE_URL=settings.base_url,
        ENVHUB_LOG_FORMAT=settings.log_format,
    )
    if settings.log_format == "json":
        env.setdefault("REFLEX_LOG_JSON", "true")  # Reflex's and Granian's own lines too
    try:
        print(f"envhub: migrating {_redact(settings.database_url)}", flush=True)
        migrate(settings)

        redis_url = settings.redis_url or start_embedded_redis(
            supervisor, settings.data_dir, env=env, logs_dir=logs_dir
        )
        env["ENVHUB_REDIS_URL"] = redis_url

        for index in range(args.workers):
            supervisor.start(
                f"worker-{index}",
                [sys.executable, "-m", "envhub.launcher", "worker"],
                env=env,
                log_file=logs_dir / "worker.log",
            )
        print(f"envhub: {args.workers} worker(s) started (log: {logs_dir / 'worker.log'})", flush=True)

        reflex = str(Path(sys.executable).parent / "reflex")
        web_argv = [reflex, "run", "--env", "dev" if args.dev else "prod", "--loglevel", "warning"]
        if args.dev:
            web_argv += ["--frontend-port", str(port), "--backend-port", str(free_port())]
        else:
            web_argv += ["--frontend-port", str(port), "--backend-port", str(port)]
        web_argv += ["--backend-host", host]
        print("envhub: building and starting the dashboard (first start takes a minute)...", flush=True)
        web = supervisor.start("web", web_argv, env=env, log_file=logs_dir / "web.log")
        health = f"http://127.0.0.1:{port}/healthz" if not args.dev else f"http://127.0.0.1:{port}/"
        wait_for(
            lambda: _http_ok(health),
            timeout=args.start_timeout,
            what="the dashboard (see var/logs/web.log)",
            alive=lambda: web.poll() is None,
        )
        sign_in = ""
        if settings.auth_mode is AuthMode.local:
            # Like a notebook server: whoever can read this terminal may sign in, once.
            sign_in = f"  Sign in (one-time link): {login_link(settings)}\n"
        print(f"\n  envhub is running: {settings.base_url}/\n{sign_in}  Press Ctrl-C to stop.\n", flush=True)
        while True:
            for name, proc in supervisor.children:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {proc.returncode}; see {logs_dir}")
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nenvhub: stopping...", flush=True)
        return 0
    except (RuntimeError, ConfigurationError) as exc:
        print(f"envhub: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        supervisor.stop()
        _stop_local_environments(settings)
        _stop_managed_services(settings)
        print("envhub: stopped", flush=True)


def _stop_local_environments(settings: Settings) -> None:
    if settings.runtime.value != "local":
        return
    from envhub.runtime.local import LocalRuntime

    stopped = LocalRuntime(settings.envs_dir).stop_all()
    if stopped:
        print(f"envhub: stopped {stopped} local environment(s); they restart with envhub", flush=True)


def _stop_managed_services(settings: Settings) -> None:
    """Stop the PostgreSQL, redis-servers and bucket servers envhub ran for local environments; their
    data stays."""
    if settings.runtime.value != "local" or not settings.services_embedded:
        return
    from envhub.integrations.backing.embedded_buckets import EmbeddedBuckets
    from envhub.integrations.backing.embedded_postgres import EmbeddedPostgres
    from envhub.integrations.backing.redis_servers import EmbeddedRedis
    from envhub.wiring import managed_backends

    backends = managed_backends(settings, local=True)
    try:
        if isinstance(backends.redis, EmbeddedRedis):
            backends.redis.stop_all()
        if isinstance(backends.buckets, EmbeddedBuckets):
            backends.buckets.stop_all()
        if isinstance(backends.postgres, EmbeddedPostgres):
            backends.postgres.stop()
    except Exception as exc:  # stopping must not hide how envhub ended; they restart with it anyway
        print(f"envhub: could not stop the managed services cleanly: {exc}", file=sys.stderr, flush=True)


def cloudflare_tunnel(settings: Settings, *, token: bool) -> int:
    """The cloudflare provider's tunnel (adopted, found by name or created): print its id, or
    with ``token`` only its connector token, for the Secret the chart's cloudflared reads."""
    from envhub.config import UrlProviderKind
    from envhub.errors import EnvhubError
    from envhub.integrations.cloudflare import CloudflareAccess, CloudflareClient

    if settings.url_provider is not UrlProviderKind.cloudflare:
        raise ConfigurationError(
            "ENVHUB_URL_PROVIDER is not cloudflare", hint="Set the ENVHUB_CLOUDFLARE_* settings first."
        )
    client = CloudflareClient(
        CloudflareAccess(
            api_token=settings.cloudflare_api_token.get_secret_value(),
            account_id=settings.cloudflare_account_id,
            zone=settings.cloudflare_zone,
            tunnel_id=settings.cloudflare_tunnel_id,
            tunnel_name=settings.cloudflare_tunnel_name,
            base_url=settings.cloudflare_api_url or None,
        )
    )
    try:
        print(client.tunnel_token() if token else client.tunnel_id())
    except EnvhubError as exc:
        print(f"envhub: {exc.code}: {exc.message}\n  {exc.hint}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


def _redact(url: str) -> str:
    return redact_url(url)


def _log_format() -> str:
    """ENVHUB_LOG_FORMAT, before anything logs; text when the settings are invalid (they are
    reported once the command reads them)."""
    try:
        return load_settings().log_format
    except ConfigurationError:
        return "text"


def main(argv: list[str] | None = None) -> int:
    logs.configure(_log_format(), process="launcher", text="envhub: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    parser = argparse.ArgumentParser(prog="envhub", description="Run envhub on its embedded default.")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="migrate and start redis, worker and dashboard")
    run_parser.add_argument("--host", default="127.0.0.1")
    run_parser.add_argument("--workers", type=int, default=1)
    run_parser.add_argument("--dev", action="store_true", help="Reflex dev mode (hot reload, two ports)")
    run_parser.add_argument("--start-timeout", type=float, default=600.0)
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("worker", help="an RQ worker, with the reconciler and the runtime's status watch")
    sub.add_parser("login-link", help="print a fresh one-time sign-in link (single-user mode)")
    tunnel_parser = sub.add_parser(
        "cloudflare-tunnel",
        help="find or create the cloudflare URL provider's tunnel (unless an id is set); print its id",
    )
    tunnel_parser.add_argument(
        "--token", action="store_true", help="print the tunnel's token for the cloudflared connector instead"
    )
    audit_parser = sub.add_parser("audit", help="the audit log")
    audit_sub = audit_parser.add_subparsers(dest="audit_command", required=True)
    verify_parser = audit_sub.add_parser(
        "verify", help="check the audit log's hash chain (exit 1 when broken)"
    )
    verify_parser.add_argument(
        "--incremental",
        action="store_true",
        help="only the events after the last intact check (default: every event)",
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "migrate":
            migrate(load_settings())
            print("envhub: database is up to date")
            return 0
        if args.command == "login-link":
            print(login_link(load_settings()))
            return 0
        if args.command == "worker":
            from envhub import wiring
            from envhub.jobs import worker

            wiring.install()
            return worker.main()
        if args.command == "cloudflare-tunnel":
            return cloudflare_tunnel(load_settings(), token=args.token)
        if args.command == "audit":
            return audit_verify(load_settings(), incremental=args.incremental)
        return run(args)
    except ConfigurationError as exc:
        print(f"envhub: {exc.message}" + (f"\n  {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
