"""Proofs about L-BFGS (``specs.lbfgs``): the two-loop recursion is the BFGS product."""

from __future__ import annotations

import sympy

from .. import lbfgs as lbfgs_spec
from .common import ProofResult, is_zero


def lbfgs_two_loop_is_bfgs_product() -> ProofResult:
    """The two-loop recursion returns −H g for H the BFGS recursion from γI over the stored
    pairs, oldest first (n = 3, m = 2 and n = 2, m = 3; symbolic s_i, y_i, g, γ and ρ_i: the
    identity holds for any ρ_i, 1/(y_iᵀs_i) included)."""
    residuals = []
    for n, m in ((3, 2), (2, 3)):
        pairs, g, gamma = lbfgs_spec.symbolic_pairs(n, m)
        h = lbfgs_spec.inverse_hessian(pairs, gamma, sympy.eye(n))
        residuals.extend(sympy.expand(-h * g - lbfgs_spec.two_loop(g, pairs, gamma)))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "lbfgs_two_loop_is_bfgs_product",
        "two-loop(g; (s_i, y_i, ρ_i), γ) = −[BFGS recursion from γI] g",
        residual,
        is_zero(residual),
    )
