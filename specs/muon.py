"""Muon (torch.optim.Muon; Keller Jordan's Muon post, 2024), torch 2.13's form: momentum, then
Newton–Schulz orthogonalisation, as statements about singular values.

One Newton–Schulz step maps X to a X + (b G + c G²) X with G = X Xᵀ. For X = U diag(s) Vᵀ that
is U diag(p(s)) Vᵀ with the odd quintic

    p(x) = a x + b x³ + c x⁵,

so k steps apply the composition p∘…∘p (k times) to the singular values of the Frobenius-
normalised input and keep its singular vectors (``specs.proofs.muon_newton_schulz_on_svd``).
The spec of the orthogonalised update O of a matrix B is therefore

    σ(O) = |p^(k)(σ(B) / ‖B‖_F)|          (sorted; ‖B‖_F clamped below at eps)

and the parameter update is elementwise: θ' = θ (1 − lr·wd) − lr_adj · O, with
lr_adj = lr·√max(1, A/B) ("original", the default) or 0.2·lr·√max(A, B) ("match_rms_adamw")
for an A×B param. torch runs the iteration in bfloat16 whatever the param's dtype.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np
import sympy

X = sympy.Symbol("x", real=True)

# torch.optim.Muon's default Newton–Schulz (a, b, c) (its ``ns_coefficients``); impl/muon.py
# keeps its own copy, as impl does not import specs.
TORCH_DEFAULT_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def _exact(value: float) -> sympy.Rational:
    """A coefficient as the rational its decimal literal names (3.4445 -> 34445/10000)."""
    return sympy.Rational(str(value)) if isinstance(value, float) else sympy.Rational(value)


def quintic(coefficients) -> sympy.Expr:
    a, b, c = (_exact(v) for v in coefficients)
    return a * X + b * X**3 + c * X**5


@functools.cache
def composition(coefficients: tuple, steps: int) -> sympy.Poly:
    """p^(steps) as one polynomial with rational coefficients (degree 5**steps)."""
    step = sympy.Poly(quintic(coefficients), X)
    result = sympy.Poly(X, X)
    for _ in range(steps):
        result = step.compose(result)
    return result


@functools.cache
def _quintic_float(coefficients: tuple):
    a, b, c = (float(Fraction(str(v))) for v in coefficients)
    return lambda x: x * (a + x * x * (b + c * x * x))


def iterate(coefficients: tuple, steps: int, x: np.ndarray) -> np.ndarray:
    """p^(steps)(x) in float64, one quintic at a time (the composition's degree, 5**steps,
    is too large to evaluate from its expanded form in floating point)."""
    p = _quintic_float(tuple(coefficients))
    for _ in range(steps):
        x = p(x)
    return x


def derivative_bound(coefficients: tuple, lo: float, hi: float) -> float:
    """max |p'(x)| over [lo, hi] (lo >= 0): at the ends or at p''s critical points."""
    dp = sympy.diff(quintic(coefficients), X)
    points = [lo, hi] + [
        float(r) for r in sympy.Poly(sympy.diff(dp, X), X).real_roots() if lo <= float(r) <= hi
    ]
    f = sympy.lambdify(X, dp)
    return max(abs(float(f(x))) for x in points)


def singular_values(coefficients: tuple, steps: int, matrix: np.ndarray, eps: float) -> np.ndarray:
    """σ(O) for the orthogonalised update of ``matrix`` (float64), sorted descending."""
    norm = max(float(np.linalg.norm(matrix)), eps)
    sigma = np.linalg.svd(np.asarray(matrix, np.float64) / norm, compute_uv=False)
    return np.sort(np.abs(iterate(coefficients, steps, sigma)))[::-1]


def adjusted_lr(lr: float, adjust_lr_fn: str | None, shape: tuple) -> float:
    a, b = shape[:2]
    if adjust_lr_fn in (None, "original"):
        return lr * math.sqrt(max(1, a / b))
    if adjust_lr_fn == "match_rms_adamw":
        return lr * 0.2 * math.sqrt(max(a, b))
    return lr


def momentum_input(grad, buffer, momentum: float, nesterov: bool):
    """(new buffer, the matrix Newton–Schulz orthogonalises), exactly (float64 inputs)."""
    new_buffer = buffer + (1 - momentum) * (grad - buffer)
    return new_buffer, grad + momentum * (new_buffer - grad) if nesterov else new_buffer
