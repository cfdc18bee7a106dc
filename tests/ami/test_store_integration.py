"""Trace replay into the real Store (SQLite, and PostgreSQL when available), via the writer."""

from __future__ import annotations

from callrouter.ami.journal import CallRecordWriter
from callrouter.simulator.ami import FakeAmiServer
from tests.ami.conftest import trace, until


async def test_records_reach_the_store_and_repeat_is_idempotent(store, make_listener,
                                                                 ami_server: FakeAmiServer,
                                                                 tmp_path) -> None:
    written: list[object] = []

    class CountingSink:
        async def write_call_records(self, records):  # type: ignore[no-untyped-def]
            await store.write_call_records(records)
            written.extend(records)

    writer = CallRecordWriter(CountingSink(), tmp_path / "j", batch_delay=0.01)
    await writer.start()
    _listener, rec = await make_listener()
    await ami_server.replay(trace("ami-queue-answered-caller-hangup"))
    await rec.wait_records(1)
    for r in rec.records:
        writer.submit(r)
        writer.submit(r)  # the same record twice: the upsert must absorb it
    await until(lambda: len(written) == 2)
    await writer.stop()
