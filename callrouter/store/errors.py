"""Errors the store raises for things a caller asked for that cannot be done."""

from __future__ import annotations

from sqlalchemy.exc import DataError, IntegrityError


class StoreError(Exception):
    """Base of the store's own errors (database failures stay SQLAlchemy errors)."""


class NotFound(StoreError):
    """The row named by an id does not exist."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (an id or an interface already taken)."""


# SQLSTATE classes about the data itself: 22 data exception (a value too long, a NUL byte
# in a text), 23 integrity constraint violation (a check, a duplicate key).
DATA_SQLSTATE_CLASSES = ("22", "23")


def refused_for_data(exc: BaseException) -> bool:
    """The database refused a statement for the data in it: writing the same rows again
    would be refused again (``RecordRejected``), unlike a database that is down.

    SQLAlchemy's asyncpg dialect turns only integrity errors into ``IntegrityError``; a
    value too long comes as a plain ``DBAPIError``, so the SQLSTATE of the driver's error
    (``orig``, or ``exc`` itself for asyncpg used directly) decides; SQLite has none and
    raises ``IntegrityError`` for a check or a duplicate key.
    """
    if isinstance(exc, DataError | IntegrityError):
        return True
    orig = getattr(exc, "orig", None) or exc
    return str(getattr(orig, "sqlstate", "") or "")[:2] in DATA_SQLSTATE_CLASSES
