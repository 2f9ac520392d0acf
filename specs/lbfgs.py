"""L-BFGS (torch.optim.LBFGS; Liu & Nocedal 1989, Nocedal & Wright's Algorithms 7.4 and 7.5),
torch 2.13's form, as statements the harness can check on strictly convex quadratics.

- **Direction.** From the stored pairs (s_i, y_i) (torch: ``old_stps``, ``old_dirs``), their
  ρ_i = 1/(y_iᵀs_i) (``ro``) and the scaling γ (``H_diag``), the inverse-Hessian approximation
  is the BFGS recursion started from γI, oldest pair first:

      H ← (I − ρ_i s_i y_iᵀ) H (I − ρ_i y_i s_iᵀ) + ρ_i s_i s_iᵀ,

  and the direction is d = −H g. The two-loop recursion computes the same vector without
  forming H (``specs.proofs.lbfgs_two_loop_is_bfgs_product``). A pair enters the history only
  if y_iᵀs_i > 1e-10 (the curvature condition, which keeps H positive definite).
- **Line search.** A step t along d accepted by ``strong_wolfe`` satisfies
  f(x + t d) ≤ f(x) + c1 t gᵀd and |∇f(x + t d)ᵀd| ≤ c2 |gᵀd| with c1 = 1e-4, c2 = 0.9.
- **Convergence.** On f(x) = xᵀAx/2 − bᵀx with A symmetric positive definite the minimiser is
  x* = A⁻¹b and x − x* = A⁻¹∇f(x): a gradient within ``tolerance_grad`` puts x within
  ‖A⁻¹‖∞·tolerance_grad of x* in the max norm.

The same functions build H symbolically (SymPy matrices, for the proof) and numerically
(mpmath matrices, for the oracle).
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy

C1, C2 = 1e-4, 0.9  # torch's _strong_wolfe defaults
CURVATURE_MIN = 1e-10  # torch keeps a pair only if y·s exceeds this


def inverse_hessian(pairs, gamma, identity):
    """The BFGS recursion from ``gamma * identity`` over ``pairs`` = [(s, y, rho), ...], oldest
    first; s and y are column matrices of the module ``identity`` comes from."""
    h = identity * gamma
    for s, y, rho in pairs:
        left = identity - rho * s * y.T
        h = left * h * left.T + rho * s * s.T
    return h


def two_loop(g, pairs, gamma):
    """The two-loop recursion's -H g (``pairs`` as in ``inverse_hessian``)."""
    q, alphas = -g, []
    for s, y, rho in reversed(pairs):
        a = rho * (s.T * q)[0, 0]
        alphas.append(a)
        q = q - a * y
    r = q * gamma
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * (y.T * r)[0, 0]
        r = r + (a - b) * s
    return r


def direction_exact(g, old_stps, old_dirs, ro, h_diag, digits: int = 50) -> np.ndarray:
    """-H g from the explicit H, at ``digits`` digits, as float64 (arrays in, flat vectors)."""
    with mpmath.workdps(digits):
        column = lambda v: mpmath.matrix([mpmath.mpf(float(x)) for x in np.ravel(v)])  # noqa: E731
        n = len(np.ravel(g))
        pairs = [
            (column(s), column(y), mpmath.mpf(float(r)))
            for s, y, r in zip(old_stps, old_dirs, ro, strict=True)
        ]
        h = inverse_hessian(pairs, mpmath.mpf(float(h_diag)), mpmath.eye(n))
        d = -(h * column(g))
        return np.array([float(d[i]) for i in range(n)])


def loss(a: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """f(x) = xᵀAx/2 − bᵀx at 50 digits (float64 inputs are exact there)."""
    with mpmath.workdps(50):
        xm = mpmath.matrix([mpmath.mpf(float(v)) for v in x])
        am = mpmath.matrix([[mpmath.mpf(float(v)) for v in row] for row in a])
        bm = mpmath.matrix([mpmath.mpf(float(v)) for v in b])
        return (xm.T * am * xm)[0, 0] / 2 - (bm.T * xm)[0, 0]


def symbolic_pairs(n: int, m: int):
    """m symbolic pairs (s_i, y_i, ρ_i) of length n, and a symbolic g and γ."""
    pairs = []
    for i in range(m):
        s = sympy.Matrix(sympy.symbols(f"s{i}_:{n}", real=True))
        y = sympy.Matrix(sympy.symbols(f"y{i}_:{n}", real=True))
        pairs.append((s, y, sympy.Symbol(f"rho{i}", positive=True)))
    g = sympy.Matrix(sympy.symbols(f"g:{n}", real=True))
    return pairs, g, sympy.Symbol("gamma", positive=True)
