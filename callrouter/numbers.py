"""Caller numbers: AGI caller id and presentation to a normalised E.164 ``Caller``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

import phonenumbers

from callrouter.domain.model import Caller

# What Asterisk and trunks put in the caller id when there is no usable number.
# Asterisk itself sends "unknown" for an absent *or* empty number (see the traces).
_NO_NUMBER = frozenset(
    {"", "unknown", "anonymous", "restricted", "private", "withheld", "unavailable", "none"}
)
# ast_party_id presentation: bits 0x60 are the presentation indicator
# (0x00 allowed, 0x20 restricted/prohibited, 0x40 unavailable).
_PRES_MASK = 0x60
_PRES_ALLOWED = 0x00
_PRES_WORDS_HIDDEN = ("prohib", "unavailable", "restricted")


class NumberError(ValueError):
    """A number that cannot be normalised; the message says why in one line."""


def presentation_hidden(callingpres: int | str | None) -> bool:
    """True when the presentation says the number must not be shown (or is unavailable)."""
    if callingpres is None or callingpres == "":
        return False
    if isinstance(callingpres, str):
        text = callingpres.strip().lower()
        if not text.isdigit():
            return any(text.startswith(w) for w in _PRES_WORDS_HIDDEN)
        callingpres = int(text)
    return (callingpres & _PRES_MASK) != _PRES_ALLOWED


class NumberNormaliser:
    """Normalises numbers with a default region; knows the shared numbers never to match."""

    def __init__(
        self,
        default_region: str = "RU",
        shared_numbers: Iterable[str] = (),
        cache_size: int = 50_000,
    ) -> None:
        self.default_region = default_region.upper()
        # Parsing with phonenumbers costs ~0.1 ms, as much as the rest of a routing
        # decision; repeat callers (the ones routing is for) hit this LRU instead.
        self._cache: OrderedDict[str, str | NumberError] = OrderedDict()
        self._cache_size = max(1, cache_size)
        self._shared: frozenset[str] = frozenset()
        self._shared = frozenset(self.normalise(n) for n in shared_numbers)

    def normalise(self, raw: str) -> str:
        """E.164 form of ``raw`` or ``NumberError``: ``8 912 345-67-89`` -> ``+79123456789``."""
        cache = self._cache
        hit = cache.get(raw)
        if hit is None:
            try:
                hit = self._normalise(raw)
            except NumberError as exc:
                # kept without its traceback (which holds the frames that raised it): a
                # flood of garbage caller ids fills the cache with small entries only
                hit = NumberError(str(exc))
            cache[raw] = hit
            if len(cache) > self._cache_size:
                cache.popitem(last=False)
        else:
            cache.move_to_end(raw)
        if isinstance(hit, NumberError):
            raise NumberError(str(hit))
        return hit

    def _normalise(self, raw: str) -> str:
        text = raw.strip()
        if text.lower() in _NO_NUMBER:
            raise NumberError(f"no number in {raw!r}")
        try:
            parsed = phonenumbers.parse(text, self.default_region)
        except phonenumbers.NumberParseException as exc:
            raise NumberError(f"{raw!r} is not a phone number: {exc}") from None
        if not phonenumbers.is_possible_number(parsed):
            raise NumberError(
                f"{raw!r} is not a possible number in region {self.default_region}"
            )
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    def caller(self, raw: str | None, callingpres: int | str | None = None) -> Caller:
        """The ``Caller`` for an AGI caller id; never raises."""
        raw = raw or ""
        if presentation_hidden(callingpres) or raw.strip().lower() in _NO_NUMBER:
            return Caller(raw=raw, number=None, withheld=True)
        try:
            number = self.normalise(raw)
        except NumberError:
            return Caller(raw=raw, number=None, withheld=False)
        return Caller(raw=raw, number=number, shared=number in self._shared)


def mask(number: str | None) -> str:
    """A number for log lines: all but the last three digits hidden."""
    if not number:
        return "-"
    keep = 3 if len(number) > 5 else 1
    return "*" * (len(number) - keep) + number[-keep:]
