"""The Store is what the routing service's ports ask for (checked by mypy and at runtime)."""

from __future__ import annotations

from callrouter.service.ports import (
    CallerSnapshotSource,
    CallRecordSink,
    DecisionLog,
    IncidentSource,
    OperatorDirectory,
)
from callrouter.store import Store


def test_store_implements_the_ports(sqlite_store: Store) -> None:
    snapshots: CallerSnapshotSource = sqlite_store
    directory: OperatorDirectory = sqlite_store
    incidents: IncidentSource = sqlite_store
    log: DecisionLog = sqlite_store
    sink: CallRecordSink = sqlite_store
    assert all(
        callable(m)
        for m in (
            snapshots.snapshot,
            directory.operators,
            incidents.active_incidents,
            log.record,
            sink.write_call_records,
        )
    )
