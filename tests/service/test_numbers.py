"""NumberNormaliser: E.164 normalisation, withheld numbers, and its LRU of parsed numbers."""

from __future__ import annotations

import pytest

from callrouter.numbers import NumberError, NumberNormaliser, mask, presentation_hidden


@pytest.mark.parametrize(("raw", "e164"), [
    ("89123456789", "+79123456789"),
    ("+7 912 345-67-89", "+79123456789"),
    ("79123456789", "+79123456789"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_normalises_to_e164(raw: str, e164: str) -> None:
    n = NumberNormaliser("RU")
    assert n.normalise(raw) == e164
    assert n.normalise(raw) == e164  # the cached answer is the same answer


@pytest.mark.parametrize("raw", ["", "anonymous", "abc", "12"])
def test_bad_numbers_raise_every_time_even_when_cached(raw: str) -> None:
    n = NumberNormaliser("RU")
    for _ in range(2):
        with pytest.raises(NumberError):
            n.normalise(raw)


def test_cache_is_bounded_and_keeps_the_most_recent() -> None:
    n = NumberNormaliser("RU", cache_size=2)
    n.normalise("89120000001")
    n.normalise("89120000002")
    n.normalise("89120000001")  # now the most recent
    n.normalise("89120000003")  # evicts ...002, the least recently used
    assert list(n._cache) == ["89120000001", "89120000003"]
    assert n.normalise("89120000002") == "+79120000002"
    assert len(n._cache) == 2


def test_caller_withheld_shared_and_unparseable() -> None:
    n = NumberNormaliser("RU", shared_numbers=["8 800 555-35-35"])
    assert n.caller("89123456789", 0).number == "+79123456789"
    hidden = n.caller("89123456789", 0x20)
    assert hidden.withheld and hidden.number is None
    assert n.caller("anonymous").withheld
    assert n.caller("88005553535").shared
    odd = n.caller("12")
    assert odd.number is None and not odd.withheld
    assert presentation_hidden("prohib") and not presentation_hidden("allowed_not_screened")
    assert mask("+79123456789") == "*********789"
