"""The check kinds, one row each: everything the matrix, the report and the profiles need to know
about a kind lives in its ``CheckKind``.

A row names the function that judges one case (``conformance.kinds``), the dtypes it runs on, the
registry entries it applies to, what its number measures, and its share of the loaded profile's
examples (checks differ in cost by an order of magnitude: an exact mpmath step per element vs a
few torch ops; the weights are fixed here for every profile, and a test never lowers its own
count). Adding a kind is one function in ``conformance/kinds/``, one row here, and one test
function in a ``conformance/test_*.py`` module that reads its name from the row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import settings

from conformance.core.gloo import DEVICE as GLOO
from conformance.kinds import (
    adafactor,
    distributed,
    errors,
    invariants,
    lbfgs,
    memory_safety,
    muon,
    vs_spec,
    vs_torch,
)
from conformance.registry import COMPLEX_DTYPES, REAL_DTYPES, Entry, Target

ALL_DTYPES = REAL_DTYPES + COMPLEX_DTYPES


def _every_entry(entry: Entry) -> bool:
    return True


def _elementwise(entry: Entry) -> bool:
    """The SymPy spec checks judge per-element rules; the others have kinds of their own."""
    return entry.elementwise


def _takes_complex(entry: Entry) -> bool:
    return any(d in COMPLEX_DTYPES for d in entry.dtypes)


@dataclass(frozen=True)
class CheckKind:
    name: str
    run: Callable  # (subject, case, ...) -> the largest measure seen; raises ConformanceError
    dtypes: tuple[str, ...]
    weight: float  # share of the loaded profile's max_examples
    measure: str = "ULP"  # what the report's number counts
    # which registry entries it applies to; None: those that list it in ``Entry.invariants``
    applies_to: Callable[[Entry], bool] | None = None
    # the gloo mesh runs the distributed check and nothing else; it runs nowhere else
    on_gloo: bool = False

    def __call__(self, *args, **kwargs) -> float:
        return self.run(*args, **kwargs)

    def applies(self, entry: Entry) -> bool:
        if self.applies_to is None:
            return self.name in entry.invariants
        return self.applies_to(entry)

    def settings(self) -> settings:
        """The loaded profile with this kind's share of examples (call it where a test is
        decorated: the profile is chosen by then, not when this module is imported)."""
        base = settings.default
        return settings(
            base,
            max_examples=max(1, math.ceil(base.max_examples * self.weight)),
            deadline=None,  # whatever profile is loaded: first torch calls and mpmath are slow
        )

    def targets(self, subjects, devices=("cpu",), dtypes=None) -> list[Target]:
        """The matrix rows of this kind: subject x dtype x device, as the entries allow."""
        return [
            Target(subject, dtype, device)
            for device in devices
            for subject in subjects
            if self.applies(subject.entry)
            and (device == GLOO) == self.on_gloo
            and (device in subject.entry.devices or device == GLOO)
            for dtype in self.dtypes
            if dtype in subject.entry.dtypes and (dtypes is None or dtype in dtypes)
        ]


KINDS: tuple[CheckKind, ...] = (
    CheckKind("torch", vs_torch.matches_torch, ALL_DTYPES, 1.0, applies_to=_every_entry),
    CheckKind("spec", vs_spec.matches_spec, ALL_DTYPES, 0.5, applies_to=_elementwise),
    CheckKind(
        "spec_trajectory",
        vs_spec.trajectory_matches_spec,
        ("float64",),
        0.5,
        applies_to=_elementwise,
    ),
    CheckKind(
        "complex_as_real",
        invariants.complex_is_real_pair,
        COMPLEX_DTYPES,
        0.5,
        applies_to=_takes_complex,
    ),
    CheckKind("nesterov_lookahead", invariants.nesterov_lookahead, ("float64",), 1.0),
    CheckKind("maximize", invariants.maximize_is_minimizing_negation, REAL_DTYPES, 0.25),
    CheckKind("state_dict_roundtrip", invariants.state_dict_roundtrip, REAL_DTYPES, 0.25),
    CheckKind("grad_untouched", invariants.grad_untouched, REAL_DTYPES, 0.25),
    CheckKind("deterministic", invariants.deterministic, REAL_DTYPES, 0.25),
    CheckKind("errors", errors.errors_like_reference, REAL_DTYPES, 0.25, applies_to=_every_entry),
    CheckKind(
        "memory_safety",
        memory_safety.memory_safety,
        ALL_DTYPES,
        0.25,
        applies_to=_every_entry,
    ),
    CheckKind("sparse_rows", vs_spec.sparse_rows, REAL_DTYPES, 0.5),
    CheckKind(
        "distributed",
        distributed.sharded_matches_torch,
        ALL_DTYPES,
        0.25,
        applies_to=_every_entry,
        on_gloo=True,
    ),
    CheckKind(
        "factored_moments", adafactor.factored_moments, REAL_DTYPES, 0.5, measure="u at scale"
    ),
    CheckKind("singular_values", muon.singular_values, REAL_DTYPES, 0.5, measure="σ error"),
    CheckKind("scale_invariance", muon.scale_invariance, REAL_DTYPES, 0.25),
    CheckKind("two_loop", lbfgs.two_loop, ("float32", "float64"), 0.5, measure="u at magnitude"),
    CheckKind("wolfe", lbfgs.wolfe, ("float32", "float64"), 0.5, measure="residual/allowance"),
    CheckKind(
        "convergence", lbfgs.convergence, ("float32", "float64"), 0.25, measure="|x−x*|/bound"
    ),
)

CHECKS: dict[str, CheckKind] = {kind.name: kind for kind in KINDS}
