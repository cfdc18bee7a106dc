"""The active routing rules, swapped whole on a good reload and kept on a bad one."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from callrouter.config.errors import RulesError
from callrouter.config.rules_file import parse_rules_toml
from callrouter.domain.rules import Rules

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class LoadedRules:
    """One set of rules in force and where it came from (source/sha256 None: built-in)."""

    rules: Rules
    source: Path | None
    loaded_at: datetime
    version: int
    sha256: str | None


@dataclass(frozen=True, slots=True)
class RejectedRules:
    """The last reload that was refused, for the status page; the rules in force did not move."""

    error: RulesError
    at: datetime
    sha256: str | None


class RulesHolder:
    """Holds the rules in force; readers take ``holder.rules`` once per call.

    A reload replaces one reference, so a call being routed sees either the old rules or
    the new ones, never a mix. ``version`` goes up by one each time different rules take
    effect (a reload of an unchanged file keeps the same version).
    """

    def __init__(self, source: Path | None = None, *, clock: Clock = _utc_now) -> None:
        self._source = source
        self._clock = clock
        self._current = LoadedRules(Rules(), None, clock(), 0, None)
        self.last_rejected: RejectedRules | None = None

    @classmethod
    def from_file(cls, source: Path | None, *, clock: Clock = _utc_now) -> RulesHolder:
        """A holder loaded from ``source`` (None: built-in rules); RulesError if it is bad.

        At start-up there are no last good rules to keep, so a bad file stops the start.
        """
        holder = cls(source, clock=clock)
        if source is not None:
            holder.reload()
        return holder

    @property
    def rules(self) -> Rules:
        return self._current.rules

    @property
    def current(self) -> LoadedRules:
        return self._current

    @property
    def source(self) -> Path | None:
        return self._source

    def reload(self) -> LoadedRules:
        """Validate the source file and put it in force; on RulesError the old rules stay."""
        if self._source is None:
            return self._current
        try:
            data = self._source.read_bytes()
        except OSError as exc:
            reason = "no such file" if isinstance(exc, FileNotFoundError) else exc
            error = RulesError([f"{self._source}: cannot be read: {reason}"], self._source)
            raise self._reject(error, None) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest == self._current.sha256:
            self.last_rejected = None  # the file is back to the rules in force
            return self._current
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            error = RulesError([f"{self._source}: not UTF-8 text: {exc}"], self._source)
            raise self._reject(error, digest) from None
        try:
            rules = parse_rules_toml(text, source=self._source)
        except RulesError as exc:
            raise self._reject(exc, digest) from None
        previous = self._current
        self._current = LoadedRules(
            rules, self._source, self._clock(), previous.version + 1, digest
        )
        self.last_rejected = None
        log.info("Routing rules version %d in force from %s", self._current.version, self._source)
        return self._current

    def validate_text(self, toml_text: str) -> Rules:
        """The rules a candidate file would give, without putting them in force."""
        return parse_rules_toml(toml_text)

    def _reject(self, error: RulesError, digest: str | None) -> RulesError:
        self.last_rejected = RejectedRules(error, self._clock(), digest)
        log.error(
            "Rules in %s refused; version %d stays in force:\n%s",
            self._source,
            self._current.version,
            error,
        )
        return error
