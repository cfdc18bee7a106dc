"""Operators and their Asterisk interfaces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from callrouter.domain.model import Operator, Tier
from callrouter.store.errors import Conflict, NotFound
from callrouter.store.models import OperatorInterfaceRow, OperatorRow
from callrouter.store.records import UNSET, Unset
from callrouter.store.sql import utcnow

_COLUMNS = (
    OperatorRow.id,
    OperatorRow.name,
    OperatorRow.tier,
    OperatorRow.queues,
    OperatorRow.active,
    OperatorInterfaceRow.interface,
)


class OperatorRepository:
    """Operators as ``Operator`` values; interfaces keep the order they were given in."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _load(self, *where: object) -> list[Operator]:
        # One query: operators left-joined to their interfaces, folded in Python.
        stmt = (
            select(*_COLUMNS)
            .outerjoin(OperatorInterfaceRow, OperatorInterfaceRow.operator_id == OperatorRow.id)
            .where(*where)  # type: ignore[arg-type]
            .order_by(OperatorRow.id, OperatorInterfaceRow.position)
        )
        found: dict[str, tuple[tuple[str, str, str, list[str], bool], list[str]]] = {}
        for op_id, name, tier, queues, active, interface in await self._session.execute(stmt):
            _head, interfaces = found.setdefault(op_id, ((op_id, name, tier, queues, active), []))
            if interface is not None:
                interfaces.append(interface)
        return [
            Operator(
                id=op_id,
                name=name,
                interfaces=tuple(interfaces),
                tier=Tier(tier),
                queues=tuple(queues or ()),
                active=bool(active),
            )
            for (op_id, name, tier, queues, active), interfaces in found.values()
        ]

    async def all(self) -> dict[str, Operator]:
        """Every operator, active or not (the router must know an inactive sticky operator)."""
        return {op.id: op for op in await self._load()}

    async def version(self) -> tuple[int, datetime | None]:
        """How many operators there are and when the last one changed. Every change goes
        through ``add`` or ``update`` (interfaces included: an interface cannot move
        without its owner's update) and operators are never deleted, so an unchanged
        pair means an unchanged directory."""
        count, latest = (await self._session.execute(
            select(func.count(), func.max(OperatorRow.updated_at))
        )).one()
        return int(count), latest

    async def list(self, *, active_only: bool = False) -> list[Operator]:
        where = [OperatorRow.active.is_(True)] if active_only else []
        return await self._load(*where)

    async def get(self, operator_id: str) -> Operator | None:
        found = await self._load(OperatorRow.id == operator_id)
        return found[0] if found else None

    async def get_by_interface(self, interface: str) -> Operator | None:
        """The operator who owns ``interface`` (e.g. ``PJSIP/1001``), as AMI events name it."""
        owner = select(OperatorInterfaceRow.operator_id).where(
            OperatorInterfaceRow.interface == interface
        )
        found = await self._load(OperatorRow.id.in_(owner.scalar_subquery()))
        return found[0] if found else None

    async def add(self, operator: Operator, now: datetime | None = None) -> Operator:
        now = now or utcnow()
        if await self._session.get(OperatorRow, operator.id) is not None:
            raise Conflict(f"operator {operator.id!r} already exists")
        row = OperatorRow(
            id=operator.id,
            name=operator.name,
            tier=Tier(operator.tier).value,
            queues=list(operator.queues),
            active=operator.active,
            created_at=now,
            updated_at=now,
        )
        self._session.add(row)
        await self._session.flush()
        await self._set_interfaces(operator.id, operator.interfaces)
        return operator

    async def update(
        self,
        operator_id: str,
        *,
        name: str | Unset = UNSET,
        interfaces: Sequence[str] | Unset = UNSET,
        tier: Tier | Unset = UNSET,
        queues: Sequence[str] | Unset = UNSET,
        active: bool | Unset = UNSET,
        now: datetime | None = None,
    ) -> Operator:
        """Change the given fields; others stay as they are."""
        row = await self._session.get(OperatorRow, operator_id)
        if row is None:
            raise NotFound(f"no operator {operator_id!r}")
        if not isinstance(name, Unset):
            row.name = name
        if not isinstance(tier, Unset):
            row.tier = Tier(tier).value
        if not isinstance(queues, Unset):
            row.queues = list(queues)
        if not isinstance(active, Unset):
            row.active = active
        row.updated_at = now or utcnow()
        await self._session.flush()
        if not isinstance(interfaces, Unset):
            await self._set_interfaces(operator_id, interfaces)
        found = await self.get(operator_id)
        assert found is not None
        return found

    async def deactivate(self, operator_id: str, now: datetime | None = None) -> Operator:
        """Operators are never deleted: their calls and decisions keep pointing at them."""
        return await self.update(operator_id, active=False, now=now)

    async def _set_interfaces(self, operator_id: str, interfaces: Iterable[str]) -> None:
        wanted = list(dict.fromkeys(interfaces))
        if wanted:
            taken = await self._session.execute(
                select(OperatorInterfaceRow.interface, OperatorInterfaceRow.operator_id).where(
                    OperatorInterfaceRow.interface.in_(wanted),
                    OperatorInterfaceRow.operator_id != operator_id,
                )
            )
            for interface, owner in taken:
                raise Conflict(f"interface {interface!r} already belongs to operator {owner!r}")
        await self._session.execute(
            delete(OperatorInterfaceRow).where(OperatorInterfaceRow.operator_id == operator_id)
        )
        self._session.add_all(
            OperatorInterfaceRow(interface=i, operator_id=operator_id, position=n)
            for n, i in enumerate(wanted)
        )
        await self._session.flush()
