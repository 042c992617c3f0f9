"""The skip guard (tests/support/skips.py) fails a run with an unlisted skip, and only then."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

TESTS = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no chromium here")

@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    assert False
"""


@pytest.fixture(autouse=True)
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin is loaded by name in a fresh pytest process, which runs outside the checkout."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def run(pytester: pytest.Pytester, allowlist: str) -> pytest.RunResult:
    pytester.makepyfile(test_sample=TESTS)
    listed = pytester.path / "allowed.toml"
    listed.write_text(allowlist)
    return pytester.runpytest_subprocess("-p", "tests.support.skips", f"--allowed-skips={listed}")


def test_an_unlisted_skip_fails_the_run_and_is_named(pytester: pytest.Pytester) -> None:
    result = run(pytester, "allowed = []\n")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*2 skipped (0 on the allowlist*",
            "FAILED: 2 skip(s) not on the allowlist*",
            "*test_sample.py::test_expected_to_fail: known*",
            "*test_sample.py::test_skips: *no chromium here*",
        ]
    )


def test_listed_skips_pass_and_are_counted(pytester: pytest.Pytester) -> None:
    allowlist = """
[[allowed]]
nodeid = "test_sample.py::test_skips"
reason = "a reason"

[[allowed]]
nodeid = "test_sample.py::test_expected_*"
reason = "another"
"""
    result = run(pytester, allowlist)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*2 skipped (2 on the allowlist*"])
    result.stdout.no_fnmatch_line("*not on the allowlist*")


def test_a_failing_run_keeps_its_own_status(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_broken="def test_fails():\n    assert False\n")
    result = pytester.runpytest_subprocess("-p", "tests.support.skips")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*0 skipped (0 on the allowlist*"])


def test_an_entry_without_a_reason_is_refused(pytester: pytest.Pytester) -> None:
    result = run(pytester, '[[allowed]]\nnodeid = "test_sample.py::test_skips"\n')
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*needs a nodeid and a reason*"])
