"""Log redaction: phone numbers masked, ``access_token`` values removed from access logs."""

from __future__ import annotations

import logging
import re

from callrouter.numbers import mask

# Digits with a leading '+' (or url-encoded '%2B') and phone separators (not '.', so
# IP addresses and versions survive); masked when they hold 7 digits or more.
_NUMBER = re.compile(r"(?:\+|%2B)?\(?\d(?:[\d\- ()]|%20)*\d")
_MIN_DIGITS = 7
_TOKEN = re.compile(r"(access_token=)[^&\s\"']+")


def redact(text: str) -> str:
    text = _TOKEN.sub(r"\1[redacted]", text)
    return _NUMBER.sub(_mask_match, text)


def _mask_match(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = sum(ch.isdigit() for ch in found.replace("%2B", "").replace("%20", " "))
    return mask(found) if digits >= _MIN_DIGITS else found


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
