"""Listener -> writer -> sink: the database stops while calls complete, then comes back."""

from __future__ import annotations

import asyncio

from callrouter.ami.journal import CallRecordWriter
from callrouter.ami.listener import AmiListener, AmiSettings
from callrouter.simulator.ami import FakeAmiServer
from tests.ami.conftest import OPERATORS, until
from tests.ami.test_journal import FlakySink


async def test_database_down_while_calls_complete(ami_server: FakeAmiServer, tmp_path) -> None:
    sink = FlakySink()
    writer = CallRecordWriter(sink, tmp_path / "ast1.journal", memory_limit=3,
                              batch_delay=0.01, retry_min=0.02, retry_max=0.05)
    await writer.start()
    listener = AmiListener(
        AmiSettings(port=ami_server.port, username="callrouter", secret="secret",
                    server_id="ast1", tick_interval=0.05),
        OPERATORS, on_record=writer.submit)
    await listener.start()
    await listener.wait_connected(5)
    try:
        await ami_server.emit_queue_call("5550100", "support-q", "Local/op1@operators/n", 2)
        await until(lambda: len(sink.rows) == 2)  # the live record, then the final one
        sink.down = True
        for i in range(1, 8):
            await ami_server.emit_queue_call(f"55501{i:02d}", "support-q",
                                             "Local/op2@operators/n", 1)
        await until(lambda: writer.status.queued_memory + writer.status.queued_journal == 14)
        assert writer.status.queued_journal == 11
        await asyncio.sleep(0.1)
        sink.down = False
        await until(lambda: len(sink.rows) == 16)
        # In order: each call's live record (in progress, no end yet), then its final one.
        assert [(r.caller_number, r.outcome, r.ended_at is None) for r in sink.rows] == [
            (f"55501{i:02d}", outcome, live) for i in range(8)
            for outcome, live in (("in_progress", True), ("answered", False))]
        assert len({r.uniqueid for r in sink.rows}) == 8
        assert [r.operator_id for r in sink.rows] == ["op1"] * 2 + ["op2"] * 14
    finally:
        await listener.stop()
        await writer.stop()
