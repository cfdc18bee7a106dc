"""Errors the store raises for things a caller asked for that cannot be done."""

from __future__ import annotations


class StoreError(Exception):
    """Base of the store's own errors (database failures stay SQLAlchemy errors)."""


class NotFound(StoreError):
    """The row named by an id does not exist."""


class Conflict(StoreError):
    """The change would break a uniqueness rule (an id or an interface already taken)."""
