"""Log redaction: phone numbers masked, ``access_token`` values removed from access logs."""

from __future__ import annotations

import logging
import re

from callrouter.numbers import mask

# A run of 6+ digits, possibly with a leading '+' or url-encoded '%2B' and separators.
_NUMBER = re.compile(r"(?:\+|%2B)?\d[\d\-. ()%20]{4,}\d")
_TOKEN = re.compile(r"(access_token=)[^&\s\"']+")


def redact(text: str) -> str:
    text = _TOKEN.sub(r"\1[redacted]", text)
    return _NUMBER.sub(lambda m: mask(m.group(0)), text)


class RedactingFilter(logging.Filter):
    """Rewrites a record's message (with its args) through ``redact``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        record.msg = redact(message)
        record.args = None
        return True


def install(logger_name: str = "uvicorn.access") -> None:
    """Add the filter to ``logger_name`` once (uvicorn logs request paths there)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())
