"""Browser-terminal speed, measured side by side: ``python -m bench.terminal`` (or ``make bench``).

In one run on this machine, for (a) a plain read loop on local PTYs with no
network (the ceiling), (b) terminado (Jupyter's terminal server) and (c)
envhub's bridge, each with real bash shells:

* throughput: MB/s of ``cat`` of a large file delivered to the client (median of three passes);
* keystroke echo latency, p50/p99 over a thousand keys (typed into
  ``cat > /dev/null``, so the tty itself echoes and only the bridge is timed);
* the echo p99 of an idle session while four others stream output;
* server CPU per MB delivered, and server memory per session, idle and after
  each of ten sessions has printed 10 MB.

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


def flood_process(kind: str, urls: list[str], token: str, big: str, stop: Any, delivered: Any) -> None:
    """Child process: FLOODS sessions printing ``big`` forever until ``stop``.

    For the PTY loop (``urls`` empty) the child reads FLOODS PTYs itself.
    """

    class _Target:
        def __init__(self, url: str) -> None:
            self.kind, self._url, self.token = kind, url, token

        def url(self, session: str) -> str:
            return self._url

    def make(url: str | None) -> Client:
        return PtyClient() if url is None else WsClient(_Target(url))  # type: ignore[arg-type]

    async def run() -> None:
        floods = [await opened(lambda url=url: make(url)) for url in urls or [None] * FLOODS]  # type: ignore[misc]
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


async def echo_latencies(
    client: Client, keys: int, on_start: Callable[[], None] = lambda: None
) -> list[float]:
    """Type into ``cat > /dev/null``: the tty echoes each key; time until it is back."""
    await client.run("cat > /dev/null", "cat > /dev/null\r\n")
    await asyncio.sleep(0.2)
    on_start()
    samples = []
    for index in range(keys):
        key = b"abcdefghij"[index % 10 : index % 10 + 1]
        started = time.perf_counter()
        await client.expect(key, key, timeout=30)
        samples.append(time.perf_counter() - started)
        if index % 50 == 49:
            await client.expect(b"\r\n", b"\r")
    await client.expect(b"\r\n", b"\x03")  # back to the prompt
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(kind: str, workdir: Path, big: Path, keys: int) -> dict[str, Any]:
    server: Server | None = None
    if kind == "terminado":
        server = Terminado(workdir)
    elif kind == "envhub":
        server = Envhub(workdir)
    if server is not None:
        server.start()

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

        # The flooding clients (or, for the PTY loop, the loop reading the
        # floods' PTYs) run in a process of their own, the same way for all
        # three, so the typist's measurement sees the server's delay, not its
        # own busy neighbours.
        context = multiprocessing.get_context("spawn")
        stop, delivered = context.Event(), context.Value("d", 0.0)
        urls = [] if server is None else [server.url(secrets.token_hex(8)) for _ in range(FLOODS)]
        flood_kind = "pty" if server is None else server.kind
        token = "" if server is None else server.token
        worker = context.Process(
            target=flood_process, args=(flood_kind, urls, token, str(big), stop, delivered)
        )
        worker.start()
        while delivered.value == 0.0:  # type: ignore[attr-defined]
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        mark: list[float] = []

        def typing_starts() -> None:
            mark.extend((time.perf_counter(), delivered.value))  # type: ignore[attr-defined]

        loaded = await echo_latencies(typist, keys, typing_starts)
        rate = (delivered.value - mark[1]) / (time.perf_counter() - mark[0])  # type: ignore[attr-defined]
        result["flood_mbs"] = rate / MB
        stop.set()
        worker.join(60)
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


def report(results: dict[str, dict[str, Any]]) -> bool:
    pty_, td, eh = results["pty"], results["terminado"], results["envhub"]
    rows = [
        ("throughput (MB/s)", "throughput_mbs", ""),
        ("echo p50 (ms)", "echo_p50_ms", ""),
        ("echo p99 (ms)", "echo_p99_ms", ""),
        ("idle echo p50 with 4 floods (ms)", "loaded_echo_p50_ms", ""),
        ("idle echo p99 with 4 floods (ms)", "loaded_echo_p99_ms", ""),
        ("idle echo max with 4 floods (ms)", "loaded_echo_max_ms", ""),
        ("the 4 floods while it types (MB/s)", "flood_mbs", ""),
        ("server CPU per MB (ms)", "cpu_ms_per_mb", ""),
        ("memory/session idle (KiB)", "mem_idle_kib", ""),
        ("memory/session after 10 MB (KiB)", "mem_after_kib", ""),
    ]
    print(f"\nmedians over the rounds\n{'':36}{'(a) PTY loop':>14}{'(b) terminado':>15}{'(c) envhub':>12}")
    for label, key, unit in rows:
        values = (fmt(pty_.get(key), unit), fmt(td.get(key), unit), fmt(eh.get(key), unit))
        print(f"{label:36}{values[0]:>14}{values[1]:>15}{values[2]:>12}")
    checks = [
        ("throughput c/a ≥ 0.80", eh["throughput_mbs"] / pty_["throughput_mbs"], 0.80, True),
        ("echo p99 c/b ≤ 1.00", eh["echo_p99_ms"] / td["echo_p99_ms"], 1.0, False),
        ("loaded/unloaded echo p99 (c) ≤ 3.00", eh["loaded_echo_p99_ms"] / eh["echo_p99_ms"], 3.0, False),
        ("memory/session after output (c) < 512 KiB", eh["mem_after_kib"], 512.0, False),
    ]
    print(f"\n{'target':44}{'value':>10}  result")
    ok = True
    for label, value, bound, at_least in checks:
        passed = value >= bound if at_least else value <= bound
        ok &= passed
        print(f"{label:44}{value:>10.2f}  {'ok' if passed else 'MISSED'}")
    ratios = {
        "throughput c/a": eh["throughput_mbs"] / pty_["throughput_mbs"],
        "throughput b/a": td["throughput_mbs"] / pty_["throughput_mbs"],
        "cpu per MB c/b": eh["cpu_ms_per_mb"] / td["cpu_ms_per_mb"],
        "loaded echo p99 c/b": eh["loaded_echo_p99_ms"] / td["loaded_echo_p99_ms"],
    }
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
                rounds[kind].append(await measure(kind, workdir, big, args.keys))
                print(json.dumps({k: round(v, 3) for k, v in rounds[kind][-1].items()}), flush=True)
    if len(rounds) < 3:
        return 0
    return 0 if report({kind: medians(results) for kind, results in rounds.items()}) else 1


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
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
