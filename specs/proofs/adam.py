"""Proofs about Adam (``specs.adam``): torch's rearranged step is the textbook m̂/(√v̂ + ε),
and its lerp EMA (Adam's, RMSprop's) is the textbook β·m + (1 − β)·g.
"""

from __future__ import annotations

import sympy

from ..adam import adam
from ..rmsprop import rmsprop
from .common import ProofResult, is_zero, symbols_of


def adam_implementable_form() -> ProofResult:
    """torch's Adam step, lr/(1−β1^t)·m/(√v/√(1−β2^t) + eps), equals the spec's m̂/(√v̂ + eps).

    For 0 ≤ β < 1 and t ≥ 1, 1 − β^t lies in (0, 1], so it is replaced by a positive symbol;
    v ≥ 0 always (a sum of squares). Checked with and without amsgrad (max taken first).
    """
    residuals = []
    for spec in (adam(), adam(amsgrad=True)):
        eta, beta1, beta2, epsilon = symbols_of(spec, "lr", "beta1", "beta2", "eps")
        second = spec.state[-1].symbol  # exp_avg_sq, or max_exp_avg_sq with amsgrad
        (m,) = symbols_of(spec, "exp_avg")
        t = spec.state[0].symbol
        c1, c2, v = sympy.symbols("c1 c2 v", positive=True)
        textbook = spec.updates[-1][1]
        implementable = spec.param - (eta / (1 - beta1**t)) * m / (
            sympy.sqrt(second) / sympy.sqrt(1 - beta2**t) + epsilon
        )
        positive = {beta1**t: 1 - c1, beta2**t: 1 - c2}
        difference = (textbook - implementable).subs(positive).xreplace({second: v})
        residuals.append(sympy.simplify(difference))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "adam_implementable_form",
        "Adam: lr/(1−β1^t)·m/(√v/√(1−β2^t) + eps) = lr·m̂/(√v̂ + eps) (plain and amsgrad)",
        residual,
        is_zero(residual),
    )


def ema_lerp_form() -> ProofResult:
    """The lerp form torch uses, m + (1−β)(g − m), is the textbook EMA β·m + (1−β)·g."""
    residuals = []
    for spec, hyper_name, state_name in (
        (adam(), "beta1", "exp_avg"),
        (rmsprop(centered=True), "alpha", "grad_avg"),
    ):
        (beta,) = symbols_of(spec, hyper_name)
        (m,) = symbols_of(spec, state_name)
        rule = dict(spec.updates)[m]
        residuals.append(sympy.simplify(rule - (beta * m + (1 - beta) * spec.grad)))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "ema_lerp_form",
        "lerp EMA (Adam exp_avg, RMSprop grad_avg) = β·m + (1−β)·g",
        residual,
        is_zero(residual),
    )
