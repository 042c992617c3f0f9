"""ENVHUB_LOG_FORMAT: a real worker's log lines are JSON objects when asked, text otherwise."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from envhub.config import PROJECT_ROOT
from envhub.logs import json_formatter
from tests.conftest import build_settings


def test_the_setting_is_text_unless_json_is_asked_for() -> None:
    assert build_settings().log_format == "text"
    assert build_settings(log_format="json").log_format == "json"
    with pytest.raises(Exception, match="log_format"):
        build_settings(log_format="xml")


def test_a_record_becomes_one_json_object_with_its_extra_fields_and_traceback() -> None:
    formatter = json_formatter("worker")
    record = logging.LogRecord(
        "envhub.jobs", logging.WARNING, __file__, 1, "job %s: %s", ("7", "ready"), None
    )
    record.job = "converge_environment"
    line = formatter.format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["message"] == "job 7: ready"
    assert (data["level"], data["logger"], data["component"]) == ("WARNING", "envhub.jobs", "worker")
    assert data["job"] == "converge_environment"
    assert isinstance(data["pid"], int)
    when = datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs(datetime.now(UTC) - when) < timedelta(minutes=1)  # UTC, as the Z says

    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("envhub", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    data = json.loads(formatter.format(record))
    assert "ValueError: broken" in data["exc_info"]


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_process_writes_its_lines_in_the_format_asked_for(log_format: str) -> None:
    # As the launcher's main() sets up every command's logging: the format read through the
    # settings (the environment here), then one record through the root logger.
    code = (
        "import logging, sys\n"
        "from envhub import launcher\n"
        "launcher.logs.configure(launcher._log_format(), process='launcher', text='envhub: %(message)s')\n"
        "logging.getLogger('envhub.test').info('hello %s', 'there')\n"
    )
    env = {"PATH": "/usr/bin:/bin", "ENVHUB_LOG_FORMAT": log_format, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT / "tests",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [line] = done.stderr.splitlines()
    if log_format == "json":
        data = json.loads(line)
        assert (data["message"], data["component"], data["logger"]) == (
            "hello there",
            "launcher",
            "envhub.test",
        )
    else:
        assert line == "envhub: hello there"
