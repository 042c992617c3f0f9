"""Embedded buckets for environments: one s3rver (npm) per instance, on this machine.

The embedded default (``make run``) has no S3 store and no IAM to limit a key
pair to one bucket. So each instance is a server of its own, like the
embedded Redis (redis_servers.py): s3rver, a filesystem-backed S3 API, run
by envhub's launcher (``s3_server.js`` beside this module) in
``<folder>/<name>/`` (0700): ``server.json`` (0600: its paths and key
pairs, rewritten at every ``ensure``), ``data/`` (the bucket's objects),
``s3.log``, ``s3.pid`` and ``s3.sock``.

* It listens on a UNIX socket only, in that 0700 folder: the local runtime's
  supervisor relays an environment's 127.0.0.1:9000 to it, and nobody else on
  the machine can connect. One instance's key pair means nothing to another
  instance's server.
* s3rver alone would serve anyone: it answers requests without credentials,
  and checks that a Signature Version 4 key id exists but never the
  signature. The launcher refuses both before s3rver sees them: a request
  must carry a valid V4 signature of a pair the server knows (see the
  launcher's header for the rest: the tenant's key reaches its own bucket
  only; paths that would leave the instance's folder are refused).
* Two key pairs: the tenant's, handed to the environment by :meth:`issue_key`
  (until then there is none), and envhub's own, kept in ``server.json``,
  which makes the bucket and checks the server. Keys are read from that file
  at start, never from a command line or the environment. A new tenant pair
  restarts the server, so the old pair is unknown as soon as
  :meth:`issue_key` returns; the data folder is kept.
* Servers daemonize (their own session, parent = init), so a worker that
  restarts or is killed does not take its environments' buckets with it; a
  lock per instance keeps two workers from starting two servers.

Installed by ``make setup`` (npm, a pinned s3rver into ``.tools/``); the
launcher uses s3rver's internals (its account model, its store), so the
version is checked before a server starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import string
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from envhub.domain.backing import DEFAULT_PORTS
from envhub.errors import BackingServiceError, BackingServiceUnavailable, NotReady
from envhub.integrations.aws import FAILURES, failure, s3_client
from envhub.integrations.backing.base import Access, BackingKind, KeyPair, parse_instance_name
from envhub.integrations.backing.local_instances import (
    ended,
    instance_lock,
    log_tail,
    pidfile_process,
    start_server,
)
from envhub.private_files import private_dir, write_private

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

S3RVER_VERSION = "3.7.1"  # the Makefile's S3RVER_VERSION
LAUNCHER = Path(__file__).with_name("s3_server.js")
BUCKET_PORT = DEFAULT_PORTS["bucket"]
# The endpoint as a workload sees it (the relay's port); envhub signs its own requests for it too.
ENDPOINT_URL = f"http://127.0.0.1:{BUCKET_PORT}"
REGION = "us-east-1"
_SOCKET_PATH_MAX = 107  # a socket address holds 108 bytes, the last one a NUL
_GONE_AFTER = 1.0  # seconds without a server process after a launch: it exited
_KEY_ALPHABET = string.ascii_uppercase + string.digits
# What a server answers when it does not know the key pair a request was signed with.
_UNKNOWN_KEY = {"InvalidAccessKeyId", "SignatureDoesNotMatch"}


def default_s3rver() -> Path:
    """Where ``make setup`` installs s3rver: ``.tools/node_modules/s3rver`` in this checkout."""
    return Path(__file__).resolve().parents[3] / ".tools" / "node_modules" / "s3rver"


def bucket_name(name: str) -> str:
    """The bucket of instance ``name``: ``envhub_e12_files`` is ``envhub-e12-files`` (S3 allows no ``_``)."""
    if parse_instance_name(name) is None:
        raise ValueError(f"{name!r} is not an instance name envhub made")
    return name.replace("_", "-")


class EmbeddedBuckets:
    """:class:`~envhub.integrations.backing.base.BucketStore` as s3rver processes in ``folder``."""

    def __init__(self, folder: Path, *, node: str | None, s3rver: Path, start_timeout: float = 10.0) -> None:
        """``node``: the Node.js binary (None or "" when there is none: :meth:`ensure` then says so)."""
        self.folder = Path(os.path.abspath(folder))
        self.node = node or ""
        self.s3rver = Path(s3rver)
        self.start_timeout = start_timeout
        self._clients: dict[tuple[str, str], S3Client] = {}
        self._clients_lock = threading.Lock()

    def home(self, name: str) -> Path:
        """The instance's folder (its config, data, log and socket)."""
        bucket_name(name)
        return self.folder / name

    def socket(self, name: str) -> Path:
        return self.home(name) / "s3.sock"

    # -- the port ------------------------------------------------------------------------------

    def ensure(self, name: str) -> Access:
        bucket, home = bucket_name(name), self.home(name)
        if len(os.fsencode(home / "s3.sock")) > _SOCKET_PATH_MAX:
            raise BackingServiceError(
                f"the socket of bucket instance {name} would be longer than a socket address allows "
                f"({_SOCKET_PATH_MAX} bytes): {home / 's3.sock'}",
                hint="Point envhub's data folder at a shorter path.",
            )
        with self._locked(name):
            private_dir(home)
            private_dir(home / "data")
            config = self._configure(home, bucket, tenant=_read_config(home).get("tenant"))
            self._run(home, config)
            self._make_bucket(home, config)
            if config["tenant"] is not None and not self._opens(home, config["tenant"], bucket):
                # A new pair was written but the server was not restarted (a run killed in between).
                self._stop(home)
                self._run(home, config)
        return Access(
            kind=BackingKind.bucket,
            host="127.0.0.1",
            port=BUCKET_PORT,
            username="",
            password="",
            database=bucket,
            unix_socket=str(home / "s3.sock"),
            endpoint_url=ENDPOINT_URL,
            region=REGION,
        )

    def issue_key(self, name: str) -> KeyPair:
        bucket, home = bucket_name(name), self.home(name)
        with self._locked(name):
            if not (home / "server.json").is_file():
                raise BackingServiceError(f"bucket instance {name} does not exist (ensure makes it first)")
            pair = {"id": _key_id("EHK"), "secret": secrets.token_urlsafe(30)}
            config = self._configure(home, bucket, tenant=pair)
            # Restarted on the new file: the old pair is unknown from now on.
            self._stop(home)
            self._run(home, config)
        return KeyPair(access_key_id=pair["id"], secret_access_key=pair["secret"])

    def remove(self, name: str) -> None:
        home = self.home(name)
        with self._locked(name) as lock:
            if home.is_dir():
                self._stop(home)
                shutil.rmtree(home, ignore_errors=True)
                if home.exists():
                    raise BackingServiceError(
                        f"the data of bucket instance {name} could not be deleted ({home})"
                    )
            self._forget(home)
            lock.unlink(missing_ok=True)

    def names(self) -> set[str]:
        try:
            entries = list(self.folder.iterdir())
        except FileNotFoundError:
            return set()
        return {entry.name for entry in entries if entry.is_dir() and parse_instance_name(entry.name)}

    def stop_all(self) -> None:
        """Stop every instance's server, keeping its data (envhub's shutdown); ``ensure`` starts it again."""
        for name in sorted(self.names()):
            with self._locked(name):
                self._stop(self.home(name))

    # -- the server process --------------------------------------------------------------------

    def _configure(self, home: Path, bucket: str, *, tenant: dict[str, str] | None) -> dict[str, Any]:
        """Write ``server.json`` (0600), keeping envhub's own key pair; returns what it holds."""
        admin = _read_config(home).get("admin")
        if not _is_pair(admin):
            admin = {"id": _key_id("EHA"), "secret": secrets.token_urlsafe(30)}
        config = {
            "s3rver": str(self.s3rver),
            "directory": str(home / "data"),
            "socket": str(home / "s3.sock"),
            "pidfile": str(home / "s3.pid"),
            "log": str(home / "s3.log"),
            "bucket": bucket,
            "admin": admin,
            "tenant": tenant if _is_pair(tenant) else None,
        }
        scratch = home / ".server.json.tmp"
        write_private(scratch, json.dumps(config, indent=2) + "\n")
        scratch.replace(home / "server.json")
        return config

    def _run(self, home: Path, config: dict[str, Any]) -> None:
        """Make sure the instance's server answers envhub, starting it if needed."""
        answer = self._answer(home, config)
        if answer == "refused":
            # It runs on an older file, whose key pair envhub lost: a restart reads the new one.
            self._stop(home)
            if self._answer(home, config) == "refused":  # still there: not the pidfile's process
                raise BackingServiceError(
                    f"a server that envhub cannot manage holds the socket of bucket instance {home.name}, "
                    "and its pidfile does not name it",
                    hint=f"Stop the process serving {home / 's3.sock'}, then retry.",
                )
        elif answer == "yes":
            return
        if _server_process(home) is None:
            (home / "s3.pid").unlink(missing_ok=True)
            (home / "s3.sock").unlink(missing_ok=True)  # left by a server that was killed
            self._launch(home)
        self._wait(home, config)

    def _launch(self, home: Path) -> None:
        self.check_installed()
        # The launcher starts the server in a session of its own and exits.
        start_server(
            [str(self.node), str(LAUNCHER), str(home / "server.json")],
            home,
            log="s3.log",
            timeout=self.start_timeout,
            what="the bucket server",
        )

    def check_installed(self) -> None:
        """Node.js and the pinned s3rver, or an error naming the missing one."""
        if not self.node or not os.access(self.node, os.X_OK):
            raise BackingServiceUnavailable(
                "Node.js (`node`) is not installed: the embedded buckets run s3rver on it",
                hint="Install Node.js and npm (`make system-deps` does, as root), then `make setup`.",
            )
        try:
            version = json.loads((self.s3rver / "package.json").read_text()).get("version")
        except (OSError, ValueError):
            version = None
        if version != S3RVER_VERSION:
            found = f"version {version}" if version else "nothing"
            raise BackingServiceUnavailable(
                f"s3rver {S3RVER_VERSION} is not installed at {self.s3rver} ({found} there): "
                "the embedded buckets run it",
                hint="Run `make setup` (it installs s3rver with npm into .tools/).",
            )

    def _wait(self, home: Path, config: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.start_timeout
        gone_since: float | None = None
        while True:
            if self._answer(home, config) == "yes":
                return
            now = time.monotonic()
            if _server_process(home) is not None:
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since > _GONE_AFTER:
                raise BackingServiceUnavailable(
                    f"the bucket server of {home.name} exited: {log_tail(home / 's3.log')}"
                )
            if now > deadline:
                raise NotReady(f"the bucket server of {home.name} is still starting")
            time.sleep(0.05)

    def _stop(self, home: Path) -> None:
        """SIGTERM to the pidfile's process (if it is this instance's server), SIGKILL after 5 s."""
        process = _server_process(home)
        if process is not None:
            for signal_it in (process.terminate, process.kill):
                with contextlib.suppress(psutil.NoSuchProcess):
                    signal_it()
                if ended(process, timeout=5):
                    break
            else:
                raise BackingServiceUnavailable(
                    f"the bucket server of {home.name} (pid {process.pid}) does not stop"
                )
        (home / "s3.pid").unlink(missing_ok=True)
        self._forget(home)

    # -- talking to a server -------------------------------------------------------------------

    def _answer(self, home: Path, config: dict[str, Any]) -> str:
        """ "yes" when the server answers envhub's key, "refused" when it does not know that key,
        "no" when nothing answers (no socket yet, or nobody listening on it)."""
        try:
            self._client(home, config["admin"]).list_buckets()
        except FAILURES as exc:
            read = failure(exc)
            if not read.answered:
                return "no"
            if read.code in _UNKNOWN_KEY:
                return "refused"
            raise BackingServiceError(
                f"the bucket server of {home.name} refused envhub ({read.code}: {read.message})"
            ) from exc
        return "yes"

    def _make_bucket(self, home: Path, config: dict[str, Any]) -> None:
        client, bucket = self._client(home, config["admin"]), config["bucket"]
        try:
            client.head_bucket(Bucket=bucket)
            return
        except FAILURES as exc:
            read = failure(exc)
            if read.code not in ("404", "NoSuchBucket", "NotFound"):
                raise _failed(f"looking for bucket {bucket}", exc) from exc
        try:
            client.create_bucket(Bucket=bucket)
        except FAILURES as exc:
            raise _failed(f"creating bucket {bucket}", exc) from exc

    def _opens(self, home: Path, pair: dict[str, str], bucket: str) -> bool:
        """Whether the server lets the tenant's pair into its bucket."""
        try:
            self._client(home, pair).head_bucket(Bucket=bucket)
        except FAILURES as exc:
            if failure(exc).status == 403:
                return False
            raise _failed(f"checking the key pair of bucket {bucket}", exc) from exc
        return True

    def _client(self, home: Path, pair: dict[str, str]) -> S3Client:
        key = (str(home), pair["id"])
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = s3_client(
                    endpoint_url=ENDPOINT_URL,
                    region=REGION,
                    access_key_id=pair["id"],
                    secret_access_key=pair["secret"],
                    connect_timeout=2.0,
                    read_timeout=30.0,
                    max_attempts=1,  # the callers poll, or report at once
                    unix_socket=str(home / "s3.sock"),
                )
            return client

    def _forget(self, home: Path) -> None:
        """Drop the clients of an instance whose server stopped (their connections are dead)."""
        with self._clients_lock:
            for key in [key for key in self._clients if key[0] == str(home)]:
                self._clients.pop(key).close()

    def _locked(self, name: str) -> contextlib.AbstractContextManager[Path]:
        return instance_lock(self.folder, name)


def _read_config(home: Path) -> dict[str, Any]:
    try:
        config = json.loads((home / "server.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _is_pair(value: object) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("secret"), str)
        and len(value["secret"]) >= 20
    )


def _key_id(prefix: str) -> str:
    """An access key id shaped like AWS's: 20 upper-case letters and digits."""
    return prefix + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(20 - len(prefix)))


def _server_process(home: Path) -> psutil.Process | None:
    """The process in the pidfile if it is this instance's server (never another program)."""
    # The launcher runs it as `node <launcher> --serve <home>/server.json`, in <home>.
    serve = ["--serve", str(home / "server.json")]
    return pidfile_process(home, "s3.pid", is_server=lambda process: process.cmdline()[-2:] == serve)


def _failed(what: str, exc: Exception) -> BackingServiceError:
    read = failure(exc)
    if read.unavailable:
        return BackingServiceUnavailable(f"{what}: the bucket server did not answer ({read.message})")
    return BackingServiceError(f"{what}: the bucket server refused it ({read.code}: {read.message})")
