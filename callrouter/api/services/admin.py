"""Rules, incidents and tokens: the administrative use cases, each audited with its actor."""

from __future__ import annotations

import asyncio
import logging

from callrouter.api import schemas as s
from callrouter.api.auth import Principal
from callrouter.api.deps import ApiDeps
from callrouter.api.errors import Refused
from callrouter.api.services.convert import incident_out, token_out
from callrouter.api.services.queries import after_commit
from callrouter.api.services.revocation import announce
from callrouter.config.errors import RulesError
from callrouter.config.rules_file import rules_to_dict
from callrouter.store.records import Role
from callrouter.store.store import Transaction

log = logging.getLogger(__name__)


def rules_state(deps: ApiDeps) -> s.RulesOut:
    loaded = deps.rules.current
    rejected = deps.rules.last_rejected
    return s.RulesOut(
        version=loaded.version,
        source=str(loaded.source) if loaded.source else None,
        loaded_at=loaded.loaded_at,
        sha256=loaded.sha256,
        rules=rules_to_dict(loaded.rules),
        last_rejected=(
            s.RejectedOut(at=rejected.at, problems=list(rejected.error.problems))
            if rejected else None
        ),
    )


def validate_rules(deps: ApiDeps, text: str) -> s.RulesValidateOut:
    """A candidate is data, not a request error: an invalid one is a 200 with problems."""
    try:
        rules = deps.rules.validate_text(text)
    except RulesError as exc:
        return s.RulesValidateOut(valid=False, problems=list(exc.problems), rules=None)
    return s.RulesValidateOut(valid=True, problems=[], rules=rules_to_dict(rules))


async def reload_rules(deps: ApiDeps, tx: Transaction, who: Principal) -> s.RulesOut | Refused:
    """Reload from the file. A refused file keeps the rules in force; the refusal is
    returned (not raised) so its audit entry commits with the request's transaction."""
    before = deps.rules.current.version
    try:
        # reading a small file; off the loop anyway so a slow disk never stalls calls
        loaded = await asyncio.to_thread(deps.rules.reload)
    except RulesError as exc:
        await tx.audit.append(who.actor, "rules.reload_refused",
                              details={"problems": list(exc.problems), "version": before})
        return Refused(
            f"rules refused, version {before} stays in force: " + "; ".join(exc.problems)
        )
    await tx.audit.append(who.actor, "rules.reload",
                          details={"from": before, "to": loaded.version, "sha256": loaded.sha256})
    log.info("%s reloaded the rules: version %d -> %d", who.actor, before, loaded.version)
    return rules_state(deps)


async def list_incidents(deps: ApiDeps, tx: Transaction, limit: int) -> list[s.IncidentOut]:
    now = deps.clock()
    return [incident_out(i, now) for i in await tx.incidents.list(limit=limit)]


async def start_incident(
    deps: ApiDeps, tx: Transaction, who: Principal, body: s.IncidentIn
) -> s.IncidentOut:
    now = deps.clock()
    incident = await tx.incidents.start(
        body.announcement, title=body.title, prefixes=body.prefixes, started_by=who.actor,
        now=now,
    )
    await tx.audit.append(who.actor, "incident.start", subject=incident.id,
                          details=body.model_dump(mode="json"))
    after_commit(tx, deps.invalidate_incidents)
    return incident_out(incident, now)


async def end_incident(
    deps: ApiDeps, tx: Transaction, who: Principal, incident_id: str
) -> s.IncidentOut:
    now = deps.clock()
    incident = await tx.incidents.end(incident_id, now=now)
    await tx.audit.append(who.actor, "incident.end", subject=incident_id)
    after_commit(tx, deps.invalidate_incidents)
    return incident_out(incident, now)


async def list_tokens(tx: Transaction) -> list[s.TokenOut]:
    return [token_out(t) for t in await tx.tokens.list()]


async def create_token(tx: Transaction, who: Principal, body: s.TokenCreate) -> s.TokenCreated:
    if body.operator_id is not None and await tx.operators.get(body.operator_id) is None:
        raise Refused(f"no operator {body.operator_id!r} to bind the token to")
    if body.role is Role.OPERATOR and body.operator_id is None:
        raise Refused("an operator token needs operator_id")
    issued = await tx.tokens.create(body.name, body.role, operator_id=body.operator_id)
    await tx.audit.append(who.actor, "token.create", subject=issued.info.id,
                          details={"role": body.role.value, "operator_id": body.operator_id})
    return s.TokenCreated(token=token_out(issued.info), plaintext=issued.plaintext)


async def revoke_token(
    deps: ApiDeps, tx: Transaction, who: Principal, token_id: str
) -> s.TokenOut:
    """Revoke it; streams open with it close once this commits."""
    info = await tx.tokens.revoke(token_id)
    await tx.audit.append(who.actor, "token.revoke", subject=token_id)
    announce(deps, tx, token_id=token_id)
    return token_out(info)
