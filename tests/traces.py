"""Where the shared Asterisk traces are, and what a test does when they are missing.

The traces (byte-exact FastAGI and AMI sessions and the configs of a real Asterisk 22)
live next to the repository in ``../shared/asterisk``, not in it;
``CALLROUTER_ASTERISK_TRACES`` names another place. Without them the tests that replay
them are skipped on a developer's machine, but fail under CI
(``CALLROUTER_REQUIRE_TRACES=1``, set by ``.ci/run`` when it finds them): about a hundred
tests replay them, and a clone that silently skipped them all would pass while proving
nothing about real Asterisk bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CALLROUTER_ASTERISK_TRACES")
              or ROOT.parent / "shared" / "asterisk")
AGI = SHARED / "agi"
AMI = SHARED / "ami"
REQUIRED = os.environ.get("CALLROUTER_REQUIRE_TRACES") == "1"


def present(path: Path) -> Path:
    """``path`` if it exists; else skip the test (or fail it under CI)."""
    if not path.exists():
        if REQUIRED:
            pytest.fail(f"shared Asterisk trace {path} is missing "
                        "(CALLROUTER_REQUIRE_TRACES=1)")
        pytest.skip(f"trace {path} not available")
    return path


def skip_unless(path: Path) -> pytest.MarkDecorator:
    """A mark: skip when ``path`` is missing, except under CI, where the test runs (and
    fails on the missing file)."""
    return pytest.mark.skipif(not path.exists() and not REQUIRED,
                              reason=f"shared Asterisk traces absent ({path})")
