"""Hypothesis profiles: ``dev`` (fast), ``ci`` (extends Hypothesis's built-in ``ci``, which
``CI=true`` auto-loads: derandomized, no database), ``thorough`` (nightly-style) and ``explore``
(thorough's counts, randomized, with a database on disk: ``nox -s conformance-explore``).

Select with ``pytest --hypothesis-profile=NAME`` (through nox: ``nox -s conformance --
--hypothesis-profile=thorough``) or ``HYPOTHESIS_PROFILE=NAME``.

Each check kind runs its own share of the loaded profile's examples (``conformance.checks``:
``CheckKind.weight``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

# too_slow: first torch calls and exact mpmath steps are slow by design, not by accident.
_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "dev", max_examples=10, deadline=None, suppress_health_check=_SUPPRESS, print_blob=True
)
settings.register_profile(
    "ci",
    parent=settings.get_profile("ci"),
    max_examples=60,
    deadline=None,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=_SUPPRESS, print_blob=True
)
# nox -s conformance-explore: thorough's counts, randomized (the seed is printed), and a database
# on disk so failures found once are replayed first next time
settings.register_profile(
    "explore",
    parent=settings.get_profile("thorough"),
    derandomize=False,
    database=DirectoryBasedExampleDatabase(".hypothesis/explore"),
)


def load_from_env() -> None:
    """``HYPOTHESIS_PROFILE`` wins over the automatic ``ci`` choice; the pytest option wins over
    both (Hypothesis's pytest plugin applies it later)."""
    if name := os.environ.get("HYPOTHESIS_PROFILE"):
        settings.load_profile(name)


def limit_shrinking(seconds: float) -> None:
    """Stop shrinking each failure after ``seconds``. Hypothesis has no setting for it, only a
    module constant (``MAX_SHRINKING_SECONDS``, 300 s), so this sets that constant; the example
    reported is then the smallest found so far."""
    from hypothesis.internal.conjecture import engine

    engine.MAX_SHRINKING_SECONDS = seconds
