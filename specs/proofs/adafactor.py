"""Proofs about Adafactor (``specs.adafactor``): the factored second moment is exact on rank-one
g², and its factors are weighted means that need no bias correction.
"""

from __future__ import annotations

import sympy

from .. import adafactor as adafactor_spec
from .common import ProofResult, is_zero


def adafactor_rank_one_reconstruction() -> ProofResult:
    """At the first step (w_1 = 1^c = 1) of a 2×3 param whose g² is rank one, g_ij = r_i k_j,
    the factored estimate R'_i C'_j / mean_i R'_i is g_ij² exactly: Adafactor's factorisation
    loses nothing on rank-one second moments (eps1 below the mean row factor)."""
    symbols, outputs = adafactor_spec.slice_statement(2, 3)
    r = sympy.symbols("r:2", positive=True)
    k = sympy.symbols("k:3", positive=True)
    grads = {symbols[3 * i + j]: r[i] * k[j] for i in range(2) for j in range(3)}
    first = {adafactor_spec.T: 1, adafactor_spec.EPS1: 0}
    zero_state = {x: 0 for x in symbols[6:11]}
    env = {**grads, **first, **zero_state}
    estimate = [(g / u) ** 2 for g, u in zip(grads.values(), outputs["update"], strict=True)]
    residual = sympy.ImmutableMatrix(
        [
            sympy.simplify(e.xreplace(env) - g**2)
            for e, g in zip(estimate, grads.values(), strict=True)
        ]
    )
    return ProofResult(
        "adafactor_rank_one_reconstruction",
        "t = 1, g_ij = r_i k_j: R'_i C'_j / mean R' = g_ij² (the factored estimate is exact)",
        residual,
        is_zero(residual),
    )


def adafactor_factors_are_weighted_means(steps: int = 4) -> ProofResult:
    """The row factor after t steps is a weighted mean of the t row means seen, with weights
    w_k Π_{j>k} (1 − w_j) that sum to 1 for any w_2..w_t, because w_1 = 1^c = 1: the starting
    value drops out and no bias correction is needed (unlike Adam's EMA from zero)."""
    start = sympy.Symbol("R0", nonnegative=True)
    means = sympy.symbols(f"a1:{steps + 1}", nonnegative=True)
    weights = [sympy.Integer(1) ** adafactor_spec.C, *sympy.symbols(f"w2:{steps + 1}")]
    value = start
    for w, a in zip(weights, means, strict=True):
        value = adafactor_spec.ema(value, a, w)
    value = sympy.expand(value)
    total = sum(value.coeff(a) for a in means)
    residual = sympy.ImmutableMatrix([sympy.simplify(total - 1), value.coeff(start)])
    return ProofResult(
        "adafactor_factors_are_weighted_means",
        f"R_{steps} = Σ_k w_k Π_(j>k)(1 − w_j) a_k with weights summing to 1; R_0 drops out",
        residual,
        is_zero(residual),
    )
