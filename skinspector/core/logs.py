"""Structured (JSON-lines) logging for services.

Each record is one JSON object: ``ts``, ``level``, ``logger``, ``msg`` and any ``extra``
fields given as ``log.info("...", extra={"fields": {...}})``. Callers never put patient
data, images, tokens or prompt text into messages or fields.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

__all__ = ["JsonFormatter", "configure"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info and record.exc_info[0] is not None:
            payload["exception"] = record.exc_info[0].__name__  # the type only: no message
        return json.dumps(payload, ensure_ascii=False, default=str)


def configure(level: int, json_lines: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.set_name("skinspector")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "skinspector"]:
        root.removeHandler(old)  # ours from an earlier call; others' handlers stay
    root.addHandler(handler)
    root.setLevel(level)
