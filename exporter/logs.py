"""Logging in logfmt or JSON, like the Go exporters' promslog."""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.http_exceptions import BadHttpMessage

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}


def _logfmt_value(value: str) -> str:
    if value and not any(c in value for c in ' ="\\\n'):
        return value
    return json.dumps(value)


class LogfmtFormatter(logging.Formatter):
    """``time=... level=info source=cache msg="..."`` lines."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        msg = record.getMessage()
        if record.exc_info:
            msg += "\n" + self.formatException(record.exc_info)
        level = record.levelname.lower().replace("warning", "warn")
        return (
            f"time={stamp}.{int(record.msecs):03d}Z level={level} "
            f"source={_logfmt_value(record.name)} msg={_logfmt_value(msg)}"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower().replace("warning", "warn"),
            "source": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data)


class MalformedRequestFilter(logging.Filter):
    """Turn aiohttp's traceback for a malformed request (already answered 400) into a debug line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, BadHttpMessage):
            return True
        # Any client could otherwise fill the error log (oversized URL, garbage request line).
        record.msg, record.args, record.exc_info = f"{record.getMessage()}: {exc}", (), None
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def setup_logging(level: str, fmt: str) -> None:
    """Configure the root logger to write to stderr (journald captures it)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS[level])
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, MalformedRequestFilter) for f in server.filters):
        server.addFilter(MalformedRequestFilter())
