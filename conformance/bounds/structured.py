"""Bounds for the optimizers that are not elementwise: reductions (Adafactor), bfloat16 matrix
products (Muon) and a two-loop recursion (LBFGS). Each is derived from the op sequence torch
runs, never set from a measurement; ``u`` is the unit roundoff of the dtype named.

Model (Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3): every op rounds once,
``fl(x op y) = (x op y)(1 + d)``, ``|d| <= u``; ``Tensor.sqrt`` and ``rsqrt`` (``1/sqrt``)
within 3u (bounds.py: not correctly rounded on this CPU); a sum of ``n`` same-sign terms in
any order adds at most ``(n - 1)u`` to the largest relative error of its terms; a matrix
product with inner dimension ``n`` accumulated in float32 (bfloat16 GEMMs on CPU and CUDA
accumulate in float32) and rounded once to the output dtype errs by at most
``u_out |AB| + gamma_n(u_32) |A||B|`` elementwise. First-order counts ``k`` enter as
``gamma_k = k u / (1 - k u)``.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

from conformance.bounds.rounding import gamma, unit_roundoff
from specs import muon as muon_spec

SQRT = 3  # Tensor.sqrt / rsqrt, in u (see the module docstring)
LERP = 4  # a lerp of same-sign values: difference, weight's cast, fma, and a ratio <= 1


# -- Adafactor ------------------------------------------------------------------------------
def adafactor(shape: tuple, dtype: torch.dtype) -> dict:
    """Relative error bounds, in units of u, of one Adafactor step's outputs and of the pieces
    the param error is assembled from (``update``: U; ``scale``: alpha/denom; ``decay``:
    p(1 - lr wd)).

    - a row mean of g² (n = row length): squares 1, their sum n - 1, sqrt 3 (norm), square
      2*(.)/2 + 1, divide 1: n + 5. Its lerp into the factor: + LERP. Columns likewise (m).
    - V = R'C' / max(mean R', eps1): the outer product 1, the mean (m - 1) + 1, the quotient 1:
      2 k_row + k_col + m + 2; the clamp at eps1² rounds eps1² (1). Vectors: g² 1 + LERP.
    - U = rsqrt(V) * g: k_V/2 + SQRT + 1.
    - RMS(U) = |U|/sqrt(N): squares 2 k_U + 1, sum N - 1, sqrt 3, the double ops 2: k_U + N/2
      + 5; RMS(p) likewise with k = 0. denom = max(1, RMS(U)/d) and alpha = max(eps2, RMS(p))
      rho keep those; -alpha/denom in double and its cast: k_scale = k_|p| + k_|U| + 2.
    - p(1 - lr wd): the factor's cast and the product: 2.
    """
    size = math.prod(shape)
    if len(shape) >= 2:
        m, n = shape[-2:]
        k_row, k_col = n + 5 + LERP, m + 5 + LERP
        k_v = 2 * k_row + k_col + m + 2
        state = {"row_var": k_row, "col_var": k_col}
    else:
        k_v = 1 + LERP
        state = {"variance": k_v}
    k_u = k_v / 2 + SQRT + 1
    k_scale = (size / 2 + 5) + (k_u + size / 2 + 5) + 2
    counts = {**state, "update": k_u, "scale": k_scale, "decay": 2}
    return {key: gamma(k, dtype) for key, k in counts.items()}


def adafactor_param_allowance(exact: dict, before, group, dtype, counts: dict) -> np.ndarray:
    """Per-element absolute bound on the new param ``p' = p~ - s U``: p~ = p(1 - lr wd) with
    its ``decay`` error, s U with ``scale + update`` and the add's own rounding (1 + its
    rounding into the dtype: 1.5 u of |p'|)."""
    u = unit_roundoff(dtype)
    decayed = np.abs(np.asarray(before, np.float64)) * abs(1 - group["lr"] * group["weight_decay"])
    moved = np.abs(
        exact["param"] - np.asarray(before, np.float64) * (1 - group["lr"] * group["weight_decay"])
    )
    rounding = gamma(1, dtype) + 0.5
    return u * (
        decayed * counts["decay"]
        + moved * (counts["scale"] + counts["update"] + 1)
        + np.abs(exact["param"]) * rounding
    )


# -- Muon -----------------------------------------------------------------------------------
U_BF16 = unit_roundoff(torch.bfloat16)
U_F32 = unit_roundoff(torch.float32)


def _gemm(inner: int, result_f: float, terms_f: float) -> float:
    """Frobenius error bound of one bfloat16 GEMM (``addmm`` included: ``beta*C + alpha*A@B``
    is formed in float32 and rounded once): ``u_bf16 |result|_F`` for the rounding plus
    ``gamma_inner(u_32)`` times the Frobenius norm of the summed terms' magnitudes."""
    gamma = inner * U_F32 / (1 - inner * U_F32)
    return U_BF16 * result_f + gamma * terms_f


def newton_schulz_step_error(coefficients, rows: int, cols: int, x_f: float, x_2: float) -> float:
    """Frobenius bound on ``fl(step(X)) - step(X)`` for one bfloat16 Newton–Schulz step on an
    X (rows <= cols) with ``|X|_F <= x_f``, ``|X|_2 <= x_2``: the gram G = X Xᵀ (inner
    ``cols``), M = b G + c G² (inner ``rows`` + 1), X' = a X + M X (inner ``rows`` + 1). Each
    rounding is propagated through what follows to first order (plus G²'s quadratic term);
    |M|_2 <= max |b s² + c s⁴| over s in [0, x_2], |X'|_F <= x_f max |p(s)/s|."""
    a, b, c = coefficients
    e_gram = _gemm(cols, x_2 * x_f, x_f * x_f)
    g_f, g_2 = x_2 * x_f + e_gram, x_2 * x_2 + e_gram
    grid = np.linspace(0.0, g_2, 257)
    m_2 = float(np.max(np.abs(b * grid + c * grid * grid)))
    m_f = m_2 * math.sqrt(rows)
    e_m = (
        _gemm(rows + 1, m_f, abs(b) * g_f + abs(c) * g_f * g_f)
        + (abs(b) + 2 * abs(c) * g_2) * e_gram
        + abs(c) * e_gram**2
    )
    s = np.linspace(0.0, x_2, 257)
    gain = float(np.max(np.abs(a + b * s * s + c * s**4)))
    e_x = _gemm(rows + 1, gain * x_f + e_m * x_f, abs(a) * x_f + (m_f + e_m) * x_f)
    return e_m * x_2 + e_x


def muon_singular_values(
    coefficients, steps: int, sigma: np.ndarray, shape: tuple, start: float, end: float
) -> tuple[np.ndarray, np.ndarray]:
    """(exact singular values of O, per-value bounds) for a matrix of ``shape`` whose
    normalised input has exact singular values ``sigma`` (padded to min(shape)).

    ``start``: Frobenius bound on the error of the computed bfloat16 normalised input;
    ``end``: relative error of reading O back out of the param (its Frobenius share).

    Per step k, with exact values s_i and bounds d_i: the computed iterate Y has singular values
    matched one-to-one to the s_i within d_i. p applied to Y moves each by at most
    L_i d_i, L_i = max |p'| over [s_i - d_i, s_i + d_i]; the step's rounding E moves every
    sorted singular value by at most |E|_2 <= |E|_F (Weyl). Composing the matchings:
    d_i' = L_i d_i + e_k. So a matching within d_i exists at the end; the check looks for it.
    """
    rows, cols = sorted(shape)
    s = np.sort(np.asarray(sigma, np.float64))[::-1]
    d = np.full_like(s, start)
    for _ in range(steps):
        if not np.all(d < 1e3):  # no information left: the bound is vacuous from here on
            s, d = np.abs(muon_spec.iterate(coefficients, 1, s)), np.full_like(s, np.inf)
            continue
        hi = s + d
        x_f, x_2 = float(np.sqrt(np.sum(hi * hi))), float(hi.max(initial=0.0))
        e = newton_schulz_step_error(coefficients, rows, cols, x_f, x_2)
        lips = np.array(
            [
                muon_spec.derivative_bound(coefficients, max(0.0, si - di), si + di)
                for si, di in zip(s, d)
            ]
        )
        s = np.abs(muon_spec.iterate(coefficients, 1, s))
        d = lips * d + e
    d = d + end * float(np.sqrt(np.sum((s + d) ** 2)))
    return s, d


def best_matching(
    actual: np.ndarray, exact: np.ndarray, bound: np.ndarray
) -> tuple[float, np.ndarray]:
    """The one-to-one matching of ``actual`` to ``exact`` that minimises the largest
    ``|actual - exact| / bound``: (that ratio, the errors in exact's order). At most 4! ways."""
    best, errors = math.inf, None
    for perm in itertools.permutations(range(len(exact))):
        err = np.abs(actual[list(perm)] - exact)
        ratio = float(np.max(err / bound, initial=0.0))
        if ratio < best:
            best, errors = ratio, err
    return best, errors


# -- LBFGS ------------------------------------------------------------------------------------
def two_loop(g, stps, dirs, ro, h_diag) -> tuple[np.ndarray, float]:
    """(magnitude, K): the two-loop recursion run on absolute values (every difference turned
    into a sum) bounds, times ``gamma_K``, the rounding error of each element of d. K counts
    the roundings along the longest path: per pair and loop a dot product (n), its product with
    ro (1), and the axpy (2); the scaling by H_diag (1), and ``al - be`` (1)."""
    n, m = len(np.ravel(g)), len(stps)
    q = np.abs(np.ravel(g)).astype(np.float64)
    alphas = []
    for s, y, r in zip(reversed(stps), reversed(dirs), reversed(ro), strict=True):
        a = abs(r) * float(np.abs(s) @ q)
        alphas.append(a)
        q = q + a * np.abs(y)
    out = abs(h_diag) * q
    for s, y, r, a in zip(stps, dirs, ro, reversed(alphas), strict=True):
        b = abs(r) * float(np.abs(y) @ out)
        out = out + (a + b) * np.abs(s)
    return out, (n + 4) * (2 * m + 1)


def gradient_rounding(a: np.ndarray, b: np.ndarray, x: np.ndarray, dtype) -> float:
    """max over elements of the bound on ``fl(A x - b) - (A x - b)``: the matrix-vector
    product (inner n) and the subtraction, ``gamma_(n+1) (|A||x| + |b|)``."""
    n = len(b)
    return float(
        np.max(
            gamma(n + 1, dtype) * unit_roundoff(dtype) * (np.abs(a) @ np.abs(x) + np.abs(b)),
            initial=0.0,
        )
    )


def loss_rounding(a, b, x, dtype) -> float:
    """Bound on the closure's loss rounding: x·(Ax)/2 - b·x summed over params,
    ``gamma_(2n+4)`` times the same sum on magnitudes."""
    n = len(b)
    magnitude = float(np.abs(x) @ (np.abs(a) @ np.abs(x)) / 2 + np.abs(b) @ np.abs(x))
    return gamma(2 * n + 4, dtype) * unit_roundoff(dtype) * magnitude


def wolfe_allowance(a, b, x0, x1, dtype) -> tuple[float, float]:
    """(Armijo, curvature) allowances for a step s = x1 - x0 the line search accepted by
    comparing rounded values: both losses' rounding, the slopes gᵀd formed in the dtype
    (inner product n, on gradients with their own rounding), and the rounding of
    x0 + t d into x1 (u |x1| per element, moving f by |∇f| and the slope by |A|), and the
    comparisons' own roundings: torch forms f + c1 t gᵀd and -c2 gᵀd as dtype tensors (the
    constant's cast and the product 2u of the c-term, the sum u |f|, |f| <= the loss's
    magnitude)."""
    u = unit_roundoff(dtype)
    s, n = x1 - x0, len(b)
    g0, g1 = a @ x0 - b, a @ x1 - b
    noise0, noise1 = gradient_rounding(a, b, x0, dtype), gradient_rounding(a, b, x1, dtype)
    dot = gamma(n, dtype) * u
    slope0 = dot * float(np.abs(g0) @ np.abs(s)) + noise0 * float(np.abs(s).sum())
    slope1 = dot * float(np.abs(g1) @ np.abs(s)) + noise1 * float(np.abs(s).sum())
    moved = u * np.abs(x1)
    placement = float((np.abs(g1) + np.abs(a) @ np.abs(s)) @ moved)
    reach0 = float(np.abs(g0) @ np.abs(s))  # >= |g0ᵀs|
    magnitude0 = float(np.abs(x0) @ (np.abs(a) @ np.abs(x0)) / 2 + np.abs(b) @ np.abs(x0))
    armijo = (
        loss_rounding(a, b, x0, dtype)
        + loss_rounding(a, b, x1, dtype)
        + 1e-4 * slope0
        + (1 + 1e-4) * placement
        + u * (magnitude0 + 1e-4 * reach0)
        + 2 * u * 1e-4 * reach0
    )
    curvature = (
        slope1
        + 0.9 * slope0
        + float((np.abs(a) @ moved) @ np.abs(s))
        + placement
        + 2 * u * 0.9 * reach0
    )
    return armijo, curvature
