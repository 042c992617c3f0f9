"""The terminal benchmark still runs: its servers start and its clients are let in.

``make bench-terminal`` is not part of the suite (it takes minutes and wants a
quiet machine), so this drives its moving parts once, briefly: envhub seeded
and served as the benchmark serves it, a client that signs in the way the
benchmark's does, a command, a few timed keystrokes, the report's arithmetic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import terminal
from bench.servers import Envhub
from tests.support.loops import run_in_fresh_loop


def test_the_benchmark_client_opens_a_shell_in_envhub_and_times_keystrokes(tmp_path: Path) -> None:
    server = Envhub(tmp_path)
    server.start()
    try:
        samples = run_in_fresh_loop(_type_a_little(server), timeout=120)
    finally:
        server.stop()
    assert len(samples) == 20
    assert all(0 < sample < 30 for sample in samples)


async def _type_a_little(server: Envhub) -> list[float]:
    client = await terminal.opened(lambda: terminal.WsClient(server))
    try:
        await client.run("echo $((6*7))", "42")
        return await terminal.echo_latencies(client, 20)
    finally:
        await client.close()


def test_the_crowd_types_round_idle_sessions_while_others_stream(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    terminal.make_big_file(big, 2 * terminal.MB)
    figures = run_in_fresh_loop(terminal.measure_crowd("envhub", tmp_path, big, 6, 3, 1), timeout=180)
    assert figures["crowd_flood_mbs"] > 0  # the stream delivered while keys were typed
    assert 0 < figures["crowd_echo_p50_ms"] <= figures["crowd_echo_p99_ms"] < 30_000
    assert figures["crowd_server_mib"] > 10


def test_the_report_checks_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    figures = {
        "throughput_mbs": 10.0,
        "echo_p50_ms": 0.2,
        "echo_p99_ms": 0.4,
        "loaded_echo_p50_ms": 0.3,
        "loaded_echo_p99_ms": 0.8,
        "loaded_echo_max_ms": 1.0,
        "flood_alone_mbs": 40.0,
        "flood_mbs": 36.0,
        "cpu_ms_per_mb": 5.0,
        "mem_idle_kib": 50.0,
        "mem_after_kib": 200.0,
        "crowd_echo_p50_ms": 0.3,
        "crowd_echo_p99_ms": 0.7,
        "crowd_flood_mbs": 30.0,
        "crowd_server_mib": 180.0,
    }
    pty = {**figures, "throughput_mbs": 11.0}
    terminado = {**figures, "echo_p99_ms": 0.5}
    assert terminal.report({"pty": pty, "terminado": terminado, "envhub": figures})
    assert "MISSED" not in capsys.readouterr().out

    # Keystrokes served by starving the floods is no better than the reverse.
    slow = {**figures, "loaded_echo_p99_ms": 1.6, "flood_mbs": 4.0}
    assert not terminal.report({"pty": pty, "terminado": terminado, "envhub": slow})
    missed = [line.split() for line in capsys.readouterr().out.splitlines() if "MISSED" in line]
    assert [line[:2] + line[-2:] for line in missed] == [
        ["loaded/unloaded", "echo", "4.00", "MISSED"],
        ["floods", "typing/alone", "0.10", "MISSED"],
    ]
    assert terminal.medians([{"a": 1.0}, {"a": 5.0}, {"a": 2.0}]) == {"a": 2.0}
