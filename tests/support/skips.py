"""A pytest plugin: every skip is counted, and a skip not on the allowlist fails the run.

A skipped test passes nothing, yet leaves the build green; a missing component
used to turn whole directories into skips. So the run prints how many tests
were skipped and exits non-zero when one of them is not on the allowlist
(``tests/allowed-skips.toml``: a test's node id, or a glob of them, each with
the reason it may skip). Expected failures (xfail) count as skips.

With xdist the controller sees every report, so the check runs there only.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

DEFAULT_ALLOWLIST = "tests/allowed-skips.toml"


@dataclass(frozen=True)
class Allowed:
    nodeid: str  # a node id, or an fnmatch pattern of them
    reason: str


def load_allowlist(path: Path) -> list[Allowed]:
    data = tomllib.loads(path.read_text())
    entries = []
    for entry in data.get("allowed", []):
        nodeid, reason = entry.get("nodeid", ""), entry.get("reason", "").strip()
        if not nodeid or not reason:
            raise pytest.UsageError(f"{path}: every allowed skip needs a nodeid and a reason: {entry}")
        entries.append(Allowed(nodeid, reason))
    return entries


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--allowed-skips",
        default=None,
        help=f"the allowlist of tests that may skip (default: {DEFAULT_ALLOWLIST} under the rootdir)",
    )


class SkipGuard:
    def __init__(self, allowlist: list[Allowed], source: Path) -> None:
        self.allowlist = allowlist
        self.source = source
        self.skipped: dict[str, str] = {}  # node id -> why it skipped

    def _record(self, report: pytest.CollectReport | pytest.TestReport) -> None:
        if not report.skipped:
            return
        # xdist's loadgroup appends "@group" to node ids; the allowlist names tests.
        nodeid = report.nodeid.rsplit("@", 1)[0] if "@" in report.nodeid else report.nodeid
        longrepr = report.longrepr
        why = longrepr[2] if isinstance(longrepr, tuple) else str(getattr(report, "wasxfail", longrepr))
        self.skipped[nodeid] = why

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self._record(report)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        self._record(report)

    def unlisted(self) -> dict[str, str]:
        return {
            nodeid: why
            for nodeid, why in self.skipped.items()
            if not any(fnmatch.fnmatchcase(nodeid, entry.nodeid) for entry in self.allowlist)
        }

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.unlisted() and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        unlisted = self.unlisted()
        allowed = len(self.skipped) - len(unlisted)
        terminalreporter.write_sep(
            "=", f"{len(self.skipped)} skipped ({allowed} on the allowlist {self.source})", bold=True
        )
        if unlisted:
            terminalreporter.write_line(
                f"FAILED: {len(unlisted)} skip(s) not on the allowlist; a test that needs a component "
                "must run with it or fail (tests/support/components.py):",
                red=True,
            )
            for nodeid, why in sorted(unlisted.items()):
                terminalreporter.write_line(f"  {nodeid}: {why}", red=True)


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):  # an xdist worker: the controller checks
        return
    option = config.getoption("--allowed-skips")
    source = Path(option) if option else config.rootpath / DEFAULT_ALLOWLIST
    allowlist = load_allowlist(source) if source.exists() else []
    config.pluginmanager.register(SkipGuard(allowlist, source), "envhub-skip-guard")
