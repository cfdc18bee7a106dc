"""Persistence adapter: SQLAlchemy models, repositories and the Store facade.

Build it in the composition root::

    engine = make_engine(url)
    store = Store(make_sessionmaker(engine))
"""

from callrouter.store.db import make_engine, make_sessionmaker
from callrouter.store.errors import Conflict, NotFound, StoreError
from callrouter.store.migrate import upgrade
from callrouter.store.records import UNSET, AuditEntry, IssuedToken, Role, StoredCall, TokenInfo
from callrouter.store.store import Store, Transaction

__all__ = [
    "UNSET",
    "AuditEntry",
    "Conflict",
    "IssuedToken",
    "NotFound",
    "Role",
    "Store",
    "StoreError",
    "StoredCall",
    "TokenInfo",
    "Transaction",
    "make_engine",
    "make_sessionmaker",
    "upgrade",
]
