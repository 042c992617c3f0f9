"""How envhub's processes write their log lines: text for people, or JSON for log collectors.

``ENVHUB_LOG_FORMAT=json`` gives one JSON object a line on stderr (python-json-logger):
``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, ``pid``, ``component``
(web, worker, reconciler, launcher), what a call passed in ``extra=``, and ``exc_info``
with a traceback. The text format stays what each process printed before.
"""

from __future__ import annotations

import logging
import time

from pythonjsonlogger.json import JsonFormatter

JSON = "json"


class _UtcJsonFormatter(JsonFormatter):
    converter = staticmethod(time.gmtime)


def json_formatter(process: str) -> logging.Formatter:
    return _UtcJsonFormatter(
        ["asctime", "levelname", "name", "message", "process"],
        datefmt="%Y-%m-%dT%H:%M:%SZ",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        static_fields={"component": process},
    )


def configure(log_format: str, *, process: str, text: str, level: int = logging.INFO) -> None:
    """Set up the root logger of this process: ``text`` (a %-style format) unless ``log_format``
    is ``json``. A handler someone installed before (Reflex, a test) is replaced only for JSON."""
    if log_format != JSON:
        logging.basicConfig(level=level, format=text)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter(process))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
