"""Proofs about Muon (``specs.muon``): Newton–Schulz acts on the singular values alone, and the
orthogonalised update is invariant under scaling its input.
"""

from __future__ import annotations

import sympy

from .. import muon as muon_spec
from .common import ProofResult, is_zero


def _rotation(t: sympy.Symbol) -> sympy.Matrix:
    """A 2×2 rotation, rationally parametrised (cos, sin) = ((1 − t²), 2t)/(1 + t²)."""
    c, s = (1 - t**2) / (1 + t**2), 2 * t / (1 + t**2)
    return sympy.Matrix([[c, -s], [s, c]])


def muon_newton_schulz_on_svd() -> ProofResult:
    """torch's Newton–Schulz step, a X + (b G + c G G) X with G = X Xᵀ, maps X = U diag(s) Vᵀ
    to U diag(p(s)) Vᵀ, p(x) = a x + b x³ + c x⁵: it acts on the singular values alone, so k
    steps apply p∘…∘p to them. (2×2, any rotations U and V, symbolic a, b, c, s.)"""
    a, b, c = sympy.symbols("a b c", real=True)
    s = sympy.symbols("s1 s2", nonnegative=True)
    u, v = _rotation(sympy.Symbol("t", real=True)), _rotation(sympy.Symbol("q", real=True))
    x = u * sympy.diag(*s) * v.T
    gram = x * x.T
    torch_step = a * x + (b * gram + c * gram * gram) * x
    p = [a * si + b * si**3 + c * si**5 for si in s]
    residual = sympy.simplify(torch_step - u * sympy.diag(*p) * v.T)
    composed = muon_spec.composition(muon_spec.TORCH_DEFAULT_COEFFICIENTS, 2)
    return ProofResult(
        "muon_newton_schulz_on_svd",
        "a X + (b XXᵀ + c (XXᵀ)²) X = U diag(p(σ)) Vᵀ for X = U diag(σ) Vᵀ",
        sympy.ImmutableMatrix(residual),
        is_zero(residual),
        {"p∘p at torch's coefficients, slope at 0": composed.coeff_monomial(muon_spec.X)},
    )


def muon_scale_invariance() -> ProofResult:
    """The orthogonalised update of κB equals that of B for every κ > 0 with κ‖B‖ above eps:
    Newton–Schulz starts from B/‖B‖_F (2×2 symbolic). In floating point κ = 2^k scales every
    rounding exactly (no overflow, no underflow), so the harness checks this bit for bit."""
    entries = sympy.Matrix(2, 2, sympy.symbols("b:4", real=True))
    kappa = sympy.Symbol("kappa", positive=True)

    def normalised(m):
        return m / sympy.sqrt(sum(e**2 for e in m))

    residual = sympy.simplify(normalised(kappa * entries) - normalised(entries))
    return ProofResult(
        "muon_scale_invariance",
        "(κB)/‖κB‖_F = B/‖B‖_F for κ > 0: the Newton–Schulz input, hence the update, is unchanged",
        sympy.ImmutableMatrix(residual),
        is_zero(residual),
    )
