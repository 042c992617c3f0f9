"""Browser-terminal speed, measured side by side: ``python -m bench.terminal`` (or ``make bench``).

In one run on this machine, for (a) a plain read loop on local PTYs with no
network (the ceiling), (b) terminado (Jupyter's terminal server) and (c)
envhub's bridge, each with real bash shells:

* throughput: MB/s of ``cat`` of a large file delivered to the client (median of three passes);
* keystroke echo latency, p50/p99 over a thousand keys (typed into
  ``cat > /dev/null``, so the tty itself echoes and only the bridge is timed);
* the echo p99 of an idle session while four others stream output, and what
  the four deliver together while it types next to what they deliver alone
  (fairness must not starve them);
* server CPU per MB delivered, and server memory per session, idle and after
  each of ten sessions has printed 10 MB;
* a crowd: 200 idle sessions beside 20 streaming ones, the echo p50/p99 of
  keys typed round the idle ones, what the streams deliver meanwhile, and the
  server's memory in total.

Clients acknowledge output as it arrives (envhub's flow control), like a
browser whose xterm keeps up: every 32 KiB, or 40 ms after output not yet
acknowledged, as ``assets/terminal-link.js`` does. Times come from
``time.perf_counter``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import pty
import secrets
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from bench.servers import Envhub, Server, Terminado

MB = 1_000_000
FLOODS = 4
# As the browser acknowledges output (assets/terminal-link.js).
ACK_EVERY = 32 * 1024
ACK_DELAY = 0.04
MEMORY_SESSIONS = 10
CAT_PASSES = 3
# How long the floods run alone, measured, before the typist starts.
ALONE_SECONDS = 3.0
# A key every 20 ms: faster than anyone types and than a held key repeats
# (25 to 33 a second). Back to back, a thousand keys a second, the "typist"
# would be a second flood, not someone typing.
KEY_INTERVAL = 0.02
# The floods' clients stand for browsers on other machines. Here they share
# two cores with the server, and at the server's priority a typist's echo
# would mostly time the kernel handing a core back from them; at a lower one
# they still take every cycle left over (the same for all three servers).
FLOOD_CLIENTS_NICE = 10
CROWD_IDLE = 200
CROWD_STREAMING = 20


class Client:
    """One terminal session, as the measuring code sees it."""

    def __init__(self) -> None:
        self.received = 0
        self._tail = b""
        self._want: tuple[bytes, asyncio.Future[None]] | None = None

    def _data(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self._want is None:
            return
        self._tail = (self._tail + chunk)[-256:]
        marker, future = self._want
        if marker in self._tail and not future.done():
            self._tail = b""
            future.set_result(None)

    async def expect(self, marker: bytes, send: bytes | None = None, timeout: float = 120.0) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tail, self._want = b"", (marker, future)
        if send is not None:
            await self.send(send)
        try:
            await asyncio.wait_for(future, timeout)
        finally:
            self._want = None

    async def run(self, command: str, done: str) -> None:
        await self.expect(done.encode(), (command + "\r").encode())

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class PtyClient(Client):
    """No network: the loop reads the PTY itself (the ceiling)."""

    async def open(self) -> None:
        self.master, slave = pty.openpty()
        env = {**os.environ, "TERM": "xterm-256color", "PS1": "$ "}
        self.proc = subprocess.Popen(
            ["setsid", "--ctty", "bash", "--norc"], stdin=slave, stdout=slave, stderr=slave, env=env
        )
        os.close(slave)
        os.set_blocking(self.master, False)
        asyncio.get_running_loop().add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self._data(data)
        else:
            asyncio.get_running_loop().remove_reader(self.master)

    async def send(self, data: bytes) -> None:
        os.write(self.master, data)

    async def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.master)
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


class WsClient(Client):
    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.session = secrets.token_hex(8)
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._acked = 0
        self._ack_later: asyncio.Task[None] | None = None

    async def open(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.token}"} if self.server.token else None
        self.ws = await connect(
            self.server.url(self.session), max_size=None, compression=None, additional_headers=headers
        )
        self._reader = asyncio.create_task(self._read())
        if self.server.kind == "terminado":
            await self.ws.send(json.dumps(["set_size", 40, 120]))

    async def _read(self) -> None:
        assert self.ws is not None
        with contextlib.suppress(Exception):
            async for message in self.ws:
                if self.server.kind == "terminado":
                    kind, *rest = json.loads(message)
                    if kind == "stdout":
                        self._data(rest[0].encode())
                elif isinstance(message, bytes):
                    self._data(message)
                    # Acknowledge as the browser does (assets/terminal-link.js).
                    if self.received - self._acked >= ACK_EVERY:
                        await self._ack()
                    elif self._ack_later is None:
                        self._ack_later = asyncio.create_task(self._ack_soon())
                elif '"ping"' in message:
                    await self.ws.send(message.replace('"ping"', '"pong"'))

    async def _ack_soon(self) -> None:
        await asyncio.sleep(ACK_DELAY)
        self._ack_later = None
        await self._ack()

    async def _ack(self) -> None:
        if self.received > self._acked and self.ws is not None:
            self._acked = self.received
            await self.ws.send(json.dumps({"type": "ack", "bytes": self._acked}))

    async def send(self, data: bytes) -> None:
        assert self.ws is not None
        if self.server.kind == "terminado":
            await self.ws.send(json.dumps(["stdin", data.decode()]))
        else:
            await self.ws.send(data)

    async def close(self) -> None:
        assert self.ws is not None
        if self.server.kind == "envhub":
            await self.ws.send(json.dumps({"type": "close"}))  # end the shell, not just the socket
            await asyncio.sleep(0.2)
        await self.ws.close()
        for task in (self._reader, self._ack_later):
            if task is not None:
                task.cancel()


async def opened(make: Callable[[], Client]) -> Client:
    client = make()
    await client.open()  # type: ignore[attr-defined]
    await client.run("stty -echoctl; echo READY_$((1+1))", "READY_2")
    return client


def flood_process(
    kind: str, urls: list[str], count: int, token: str, big: str, stop: Any, delivered: Any
) -> None:
    """Child process: ``count`` sessions printing ``big`` forever until ``stop``.

    For the PTY loop (``urls`` empty) the child reads ``count`` PTYs itself.
    """
    os.nice(FLOOD_CLIENTS_NICE)

    class _Target:
        def __init__(self, url: str) -> None:
            self.kind, self._url, self.token = kind, url, token

        def url(self, session: str) -> str:
            return self._url

    def make(url: str | None) -> Client:
        return PtyClient() if url is None else WsClient(_Target(url))  # type: ignore[arg-type]

    async def run() -> None:
        floods = [await opened(lambda url=url: make(url)) for url in urls or [None] * count]  # type: ignore[misc]
        for flood in floods:
            await flood.send(f"while :; do cat {big}; done\r".encode())
        while not stop.is_set():
            # Often enough to time the PTY loop's typist, which is done in milliseconds.
            delivered.value = float(sum(f.received for f in floods))
            await asyncio.sleep(0.005)
        for flood in floods:
            await flood.send(b"\x03")
            await flood.close()

    asyncio.run(run())


class Floods:
    """Sessions printing a big file in a loop, driven by a process of their own.

    The flooding clients (or, for the PTY loop, the loop reading the floods'
    PTYs) run in a child process, the same way for all three, so the typist's
    measurement sees the server's delay, not its own busy neighbours.
    """

    def __init__(self, server: Server | None, count: int, big: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop, self._delivered = context.Event(), context.Value("d", 0.0)
        urls = [] if server is None else [server.url(secrets.token_hex(8)) for _ in range(count)]
        kind = "pty" if server is None else server.kind
        token = "" if server is None else server.token
        self._worker = context.Process(
            target=flood_process, args=(kind, urls, count, token, str(big), self._stop, self._delivered)
        )
        self._marks: dict[float, float] = {}

    @property
    def delivered(self) -> float:
        return float(self._delivered.value)  # type: ignore[attr-defined]

    def start(self) -> None:
        self._worker.start()

    async def running(self) -> None:
        """Wait until every flood delivers, then a second more: they are at full pace."""
        while self.delivered == 0.0:
            if not self._worker.is_alive():
                raise RuntimeError("the flooding process died before its floods started")
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)

    def mark(self) -> float:
        at = time.perf_counter()
        self._marks[at] = self.delivered
        return at

    def rate_since(self, at: float) -> float:
        """MB/s delivered since the mark ``at``."""
        return (self.delivered - self._marks[at]) / (time.perf_counter() - at) / MB

    async def rate(self, seconds: float) -> float:
        """MB/s delivered over the next ``seconds``, once at full pace."""
        await self.running()
        at = self.mark()
        await asyncio.sleep(seconds)
        return self.rate_since(at)

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(60)
        if self._worker.is_alive():
            self._worker.kill()


async def echo_latencies(
    client: Client, keys: int, on_start: Callable[[], None] = lambda: None
) -> list[float]:
    """Type into ``cat > /dev/null``: the tty echoes each key; time until it is back."""
    return await typed_round([client], keys, on_start)


async def typed_round(
    clients: list[Client], keys: int, on_start: Callable[[], None] = lambda: None
) -> list[float]:
    """Type ``keys`` keys, one client after the other, into ``cat > /dev/null``; time each echo."""
    for client in clients:
        await client.run("cat > /dev/null", "cat > /dev/null\r\n")
    await asyncio.sleep(0.2)
    on_start()
    samples = []
    for index in range(keys):
        client = clients[index % len(clients)]
        key = b"abcdefghij"[index % 10 : index % 10 + 1]
        started = time.perf_counter()
        await client.expect(key, key, timeout=30)
        samples.append(time.perf_counter() - started)
        if index // len(clients) % 50 == 49:
            await client.expect(b"\r\n", b"\r")
        await asyncio.sleep(max(0.0, started + KEY_INTERVAL - time.perf_counter()))
    for client in clients:
        await client.expect(b"\r\n", b"\x03")  # back to the prompt
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(kind: str, workdir: Path, big: Path, keys: int) -> dict[str, Any]:
    server = start_server(kind, workdir)

    def make() -> Client:
        return PtyClient() if server is None else WsClient(server)

    def cpu() -> float:
        return time.process_time() if server is None else server.cpu_seconds()

    result: dict[str, Any] = {}
    try:
        typist = await opened(make)
        unloaded = await echo_latencies(typist, keys)
        result["echo_p50_ms"] = statistics.median(unloaded) * 1000
        result["echo_p99_ms"] = percentile(unloaded, 0.99) * 1000

        reader = await opened(make)
        await asyncio.sleep(1.0)  # nobody typing: the stream gets whole turns
        # The median of a few passes, as everything else here is a median.
        size, rates = big.stat().st_size, []
        cpu0, client0 = cpu(), time.process_time()
        for _ in range(CAT_PASSES):
            started = time.perf_counter()
            await reader.run(f"cat {big}; echo CAT_DONE_$((1+1))", "CAT_DONE_2")
            rates.append(size / MB / (time.perf_counter() - started))
        megabytes = CAT_PASSES * size / MB
        if server is not None:
            result["client_cpu_ms_per_mb"] = (time.process_time() - client0) * 1000 / megabytes
        result["throughput_mbs"] = statistics.median(rates)
        result["cpu_ms_per_mb"] = (cpu() - cpu0) * 1000 / megabytes
        await reader.close()

        floods = Floods(server, FLOODS, big)
        floods.start()
        result["flood_alone_mbs"] = await floods.rate(ALONE_SECONDS)
        mark: list[float] = []
        loaded = await echo_latencies(typist, keys, lambda: mark.append(floods.mark()))
        result["flood_mbs"] = floods.rate_since(mark[0])
        floods.stop()
        result["loaded_echo_p50_ms"] = statistics.median(loaded) * 1000
        result["loaded_echo_p99_ms"] = percentile(loaded, 0.99) * 1000
        result["loaded_echo_max_ms"] = max(loaded) * 1000
        await typist.close()

        if server is not None:
            await asyncio.sleep(1.0)
            base = server.rss()
            sessions = [await opened(make) for _ in range(MEMORY_SESSIONS)]
            await asyncio.sleep(1.0)
            idle = server.rss()
            await asyncio.gather(
                *(s.run("yes | head -c 10000000; echo MEM_DONE_$((1+1))", "MEM_DONE_2") for s in sessions)
            )
            await asyncio.sleep(5.0)  # let housekeeping settle the screens
            after = server.rss()
            result["mem_idle_kib"] = (idle - base) / MEMORY_SESSIONS / 1024
            result["mem_after_kib"] = (after - base) / MEMORY_SESSIONS / 1024
            for session in sessions:
                await session.close()
    finally:
        if server is not None:
            server.stop()
    return result


async def measure_crowd(
    kind: str, workdir: Path, big: Path, keys: int, idle: int, streaming: int
) -> dict[str, Any]:
    """``idle`` sessions at a prompt beside ``streaming`` floods: keys typed round the idle ones."""
    server = start_server(kind, workdir)

    def make() -> Client:
        return PtyClient() if server is None else WsClient(server)

    result: dict[str, Any] = {}
    sessions: list[Client] = []
    try:
        for _ in range(0, idle, 20):  # a browser tab at a time would take minutes; twenty at once
            sessions += await asyncio.gather(*(opened(make) for _ in range(min(20, idle - len(sessions)))))
        floods = Floods(server, streaming, big)
        floods.start()
        await floods.running()
        mark: list[float] = []
        samples = await typed_round(sessions, keys, lambda: mark.append(floods.mark()))
        result["crowd_flood_mbs"] = floods.rate_since(mark[0])
        if server is not None:
            result["crowd_server_mib"] = server.rss() / 2**20
        floods.stop()
        result["crowd_echo_p50_ms"] = statistics.median(samples) * 1000
        result["crowd_echo_p99_ms"] = percentile(samples, 0.99) * 1000
    finally:
        await asyncio.gather(*(session.close() for session in sessions), return_exceptions=True)
        if server is not None:
            server.stop()
    return result


def start_server(kind: str, workdir: Path) -> Server | None:
    """The server for ``kind``, started; none for the PTY loop."""
    server: Server | None = None
    if kind == "terminado":
        server = Terminado(workdir)
    elif kind == "envhub":
        server = Envhub(workdir)
    if server is not None:
        server.start()
    return server


def make_big_file(path: Path, size: int) -> None:
    line = (b"envhub terminal benchmark: the quick brown fox jumps over the lazy dog 0123456789 " * 2)[
        :99
    ] + b"\n"
    with path.open("wb") as out:
        block = line * (1 << 14)
        for _ in range(max(1, size // len(block))):
            out.write(block)


def fmt(value: float | None, unit: str = "") -> str:
    return "—" if value is None else f"{value:,.2f}{unit}"


def report(
    results: dict[str, dict[str, Any]], crowd: tuple[int, int] = (CROWD_IDLE, CROWD_STREAMING)
) -> bool:
    pty_, td, eh = results["pty"], results["terminado"], results["envhub"]
    rows = [
        ("throughput (MB/s)", "throughput_mbs"),
        ("echo p50 (ms)", "echo_p50_ms"),
        ("echo p99 (ms)", "echo_p99_ms"),
        (f"idle echo p50 with {FLOODS} floods (ms)", "loaded_echo_p50_ms"),
        (f"idle echo p99 with {FLOODS} floods (ms)", "loaded_echo_p99_ms"),
        (f"idle echo max with {FLOODS} floods (ms)", "loaded_echo_max_ms"),
        (f"the {FLOODS} floods alone (MB/s)", "flood_alone_mbs"),
        (f"the {FLOODS} floods while it types (MB/s)", "flood_mbs"),
        ("server CPU per MB (ms)", "cpu_ms_per_mb"),
        ("memory/session idle (KiB)", "mem_idle_kib"),
        ("memory/session after 10 MB (KiB)", "mem_after_kib"),
    ]
    if "crowd_echo_p99_ms" in eh:
        rows += [
            (f"crowd: echo p50 of {crowd[0]} idle (ms)", "crowd_echo_p50_ms"),
            (f"crowd: echo p99 of {crowd[0]} idle (ms)", "crowd_echo_p99_ms"),
            (f"crowd: {crowd[1]} streams deliver (MB/s)", "crowd_flood_mbs"),
            ("crowd: server memory in total (MiB)", "crowd_server_mib"),
        ]
    width = max(len(label) for label, _ in rows) + 2
    print(
        f"\nmedians over the rounds\n{'':{width}}{'(a) PTY loop':>14}{'(b) terminado':>15}{'(c) envhub':>12}"
    )
    for label, key in rows:
        values = (fmt(pty_.get(key)), fmt(td.get(key)), fmt(eh.get(key)))
        print(f"{label:{width}}{values[0]:>14}{values[1]:>15}{values[2]:>12}")
    checks = [
        ("throughput c/a ≥ 0.90", eh["throughput_mbs"] / pty_["throughput_mbs"], 0.90, True),
        ("echo p99 c/b ≤ 1.00", eh["echo_p99_ms"] / td["echo_p99_ms"], 1.0, False),
        ("loaded/unloaded echo p99 (c) ≤ 2.00", eh["loaded_echo_p99_ms"] / eh["echo_p99_ms"], 2.0, False),
        ("floods typing/alone (c) ≥ 0.80", eh["flood_mbs"] / eh["flood_alone_mbs"], 0.80, True),
        ("server CPU per MB (c) ≤ 8 ms", eh["cpu_ms_per_mb"], 8.0, False),
        ("memory/session after output (c) ≤ 256 KiB", eh["mem_after_kib"], 256.0, False),
    ]
    print(f"\n{'target':44}{'value':>10}  result")
    ok = True
    for label, value, bound, at_least in checks:
        passed = value >= bound if at_least else value <= bound
        ok &= passed
        print(f"{label:44}{value:>10.2f}  {'ok' if passed else 'MISSED'}")
    ratios = {
        "throughput b/a": td["throughput_mbs"] / pty_["throughput_mbs"],
        "cpu per MB c/b": eh["cpu_ms_per_mb"] / td["cpu_ms_per_mb"],
        "loaded echo p99 c/b": eh["loaded_echo_p99_ms"] / td["loaded_echo_p99_ms"],
        "floods typing/alone b": td["flood_mbs"] / td["flood_alone_mbs"],
    }
    if "crowd_echo_p99_ms" in eh:
        ratios["crowd echo p99 c/b"] = eh["crowd_echo_p99_ms"] / td["crowd_echo_p99_ms"]
        ratios["crowd/unloaded echo p99 c"] = eh["crowd_echo_p99_ms"] / eh["echo_p99_ms"]
    print("\n" + "   ".join(f"{k}: {v:.2f}" for k, v in ratios.items()))
    return ok


async def main_async(args: argparse.Namespace) -> int:
    kinds = args.only or ("pty", "terminado", "envhub")
    rounds: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="envhub-bench-") as scratch:
        workdir = Path(scratch)
        big = workdir / "big.txt"
        make_big_file(big, args.mb * MB)
        # Rounds interleave the three, so a noisy neighbour spoils one round of
        # each rather than all of one; the table shows each figure's median.
        for number in range(1, args.rounds + 1):
            for kind in kinds:
                load = " ".join(f"{x:.1f}" for x in os.getloadavg())
                print(
                    f"round {number}/{args.rounds}: measuring {kind}… "
                    f"(load average {load} on {os.cpu_count()} cores)",
                    flush=True,
                )
                figures = await measure(kind, workdir, big, args.keys)
                if args.crowd[0]:
                    figures |= await measure_crowd(kind, workdir, big, args.keys, *args.crowd)
                rounds[kind].append(figures)
                print(json.dumps({k: round(v, 3) for k, v in rounds[kind][-1].items()}), flush=True)
    if len(rounds) < 3:
        return 0
    figures = {kind: medians(results) for kind, results in rounds.items()}
    return 0 if report(figures, crowd=args.crowd) else 1


def medians(results: list[dict[str, Any]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in results) for key in results[0]}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=64, help="size of the file cat prints (MB)")
    parser.add_argument("--keys", type=int, default=1000, help="keystrokes per latency sample")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all three; medians are reported")
    parser.add_argument(
        "--only", nargs="*", choices=("pty", "terminado", "envhub"), help="measure only these"
    )
    parser.add_argument(
        "--crowd",
        default=f"{CROWD_IDLE},{CROWD_STREAMING}",
        help="idle and streaming sessions of the crowd scenario (0,0 leaves it out)",
    )
    args = parser.parse_args()
    try:
        args.crowd = tuple(int(n) for n in args.crowd.split(","))
        assert len(args.crowd) == 2
    except (ValueError, AssertionError):
        parser.error("--crowd wants two numbers: idle,streaming (for example 200,20)")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
