"""Hypothesis profiles: ``dev`` (fast), ``ci`` (extends Hypothesis's built-in ``ci``, which
``CI=true`` auto-loads: derandomized, no database), ``thorough`` (nightly-style) and ``explore``
(thorough's counts, randomized, with a database on disk: ``nox -s conformance-explore``).

Select with ``pytest --hypothesis-profile=NAME`` (through nox: ``nox -s conformance --
--hypothesis-profile=thorough``) or ``HYPOTHESIS_PROFILE=NAME``.

Checks differ in cost by an order of magnitude (an exact mpmath step per element vs a few torch
ops), so each check runs ``EXAMPLE_WEIGHTS[check] * max_examples`` examples of the loaded
profile. The weights are fixed here for every profile; a test never lowers its own count.
"""

from __future__ import annotations

import math
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

EXAMPLE_WEIGHTS = {
    "torch": 1.0,
    "spec": 0.5,
    "spec_trajectory": 0.5,
    "complex_as_real": 0.5,
    "maximize": 0.25,
    "state_dict_roundtrip": 0.25,
    "grad_untouched": 0.25,
    "deterministic": 0.25,
    "nesterov_lookahead": 1.0,
    "errors": 0.25,
    "memory_safety": 0.25,
    "sparse_rows": 0.5,
    "factored_moments": 0.5,
    "singular_values": 0.5,
    "scale_invariance": 0.25,
    "two_loop": 0.5,
    "wolfe": 0.5,
    "convergence": 0.25,
    "distributed": 0.25,
}


def load_from_env() -> None:
    """``HYPOTHESIS_PROFILE`` wins over the automatic ``ci`` choice; the pytest option wins over
    both (Hypothesis's pytest plugin applies it later)."""
    if name := os.environ.get("HYPOTHESIS_PROFILE"):
        settings.load_profile(name)


def for_check(check: str) -> settings:
    """The loaded profile with this check's share of examples."""
    base = settings.default
    return settings(
        base,
        max_examples=max(1, math.ceil(base.max_examples * EXAMPLE_WEIGHTS[check])),
        deadline=None,  # whatever profile is loaded: first torch calls and mpmath are slow
    )


def limit_shrinking(seconds: float) -> None:
    """Stop shrinking each failure after ``seconds``. Hypothesis has no setting for it, only a
    module constant (``MAX_SHRINKING_SECONDS``, 300 s), so this sets that constant; the example
    reported is then the smallest found so far."""
    from hypothesis.internal.conjecture import engine

    engine.MAX_SHRINKING_SECONDS = seconds
