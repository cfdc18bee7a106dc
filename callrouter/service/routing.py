"""RoutingService: gathers a call's inputs through the ports, runs decide, logs the result."""

from __future__ import annotations

# Interface (implemented in the next commit):
#
#   class RoutingService:
#       async def route_call(self, call: InboundCall, now: datetime | None = None) -> DecisionRecord
#           Never raises for store trouble: returns a fallback decision (queue = entry queue
#           or rules.default_queue, reason FALLBACK_STORE_DOWN / FALLBACK_BAD_INPUT).
#       def fallback(self, call: InboundCall, code: ReasonCode, text: str) -> DecisionRecord
#           The decision used when the AGI adapter's time budget runs out.
