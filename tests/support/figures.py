"""A pytest plugin: figures that tests measure are printed at the end of the run.

A test records a figure with ``record_property("figure: <what>", value)``; the
report carries it (to the xdist controller too), and the run ends with a list
of them, so a figure quoted in the README is one a test printed (and checked).
"""

from __future__ import annotations

import pytest

PREFIX = "figure: "


class Figures:
    def __init__(self) -> None:
        self.found: dict[str, tuple[object, str]] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if isinstance(name, str) and name.startswith(PREFIX):
                self.found[name.removeprefix(PREFIX)] = (value, report.nodeid.split("@", 1)[0])

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.found:
            return
        terminalreporter.write_sep("=", "figures measured by tests")
        for what, (value, nodeid) in sorted(self.found.items()):
            terminalreporter.write_line(f"{what}: {value}  ({nodeid.split('::')[0]})")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        config.pluginmanager.register(Figures(), "envhub-figures")
