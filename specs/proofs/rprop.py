"""Proofs about Rprop (``specs.rprop``): Riedmiller & Braun's weight-backtracking against torch's
iRprop−.
"""

from __future__ import annotations

import sympy

from .. import papers
from ..rprop import rprop
from .common import ProofResult, is_zero, symbolic_step


def rprop_backtracking() -> ProofResult:
    """Riedmiller & Braun's weight-backtracking, against torch's iRprop−.

    1. The revert sign(prev)·step_size is the previous weight step undone: from every state
       (prev = 0, > 0 or < 0) and gradient (> 0, < 0, 0) one step leaves either prev = 0 (no
       revert possible next) or sign(prev)·step_size = p_before − p_after.
    2. A sign change right after a step returns the paper's p exactly to where it was before
       that step, p_{t+1} = p_{t−1}; torch's p stays at p_t. Step size and prev agree. Checked
       from a fresh state and from a started one, for both sign orders, with the paper's
       Δ0, η±, Δmin, Δmax and symbolic gradients and start.
    """
    paper, torch_spec = papers.rprop(), rprop().exact()
    hyper_values = {"lr": sympy.Rational(1, 10), "etaminus": sympy.Rational(1, 2)}
    hyper_values |= {"etaplus": sympy.Rational(6, 5), "step_size_min": sympy.Rational(1, 10**6)}
    hyper_values |= {"step_size_max": sympy.Integer(50)}
    hyper = {paper.hyper(name).symbol: value for name, value in hyper_values.items()}
    t, q, s = (var.symbol for var in paper.state)
    p = paper.param
    x0 = sympy.Symbol("x0", real=True)
    a, b, Q, S = sympy.symbols("a b Q S", positive=True)

    def step(spec, env, gradient):
        return symbolic_step(spec, env, lambda _: gradient, hyper)

    residuals = []
    for prev in (sympy.S.Zero, Q, -Q):
        for gradient in (a, -b, sympy.S.Zero):
            before = {p: x0, t: 3, q: prev, s: S}
            after = step(paper, before, gradient)
            if after[q] == 0:
                continue
            residuals.append(sympy.simplify(sympy.sign(after[q]) * after[s] - (x0 - after[p])))

    gaps = {}
    for fresh in (True, False):
        for first, second in ((a, -b), (-a, b)):
            # fresh: step 1 is a g·prev = 0 step; started: a growing step (prev has g1's sign)
            start = (
                {t: 0, q: 0, s: hyper_values["lr"]}
                if fresh
                else {t: 3, q: Q * sympy.sign(first), s: sympy.Rational(1, 8)}
            )
            paper_env = step(paper, {**start, p: x0}, first)
            torch_env = step(torch_spec, {**start, p: x0}, first)
            p1 = paper_env[p]
            residuals.append(p1 - torch_env[p])
            paper_env, torch_env = (
                step(paper, paper_env, second),
                step(torch_spec, torch_env, second),
            )
            residuals += [paper_env[p] - x0, torch_env[p] - p1]
            residuals += [paper_env[name] - torch_env[name] for name in (q, s)]
            gaps[f"torch - paper after a flip, start {start[s]}, g1 = {first}"] = sympy.simplify(
                torch_env[p] - paper_env[p]
            )
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "rprop_backtracking",
        "Rprop: sign(prev)·step_size is always the last step undone; on a sign change the "
        "paper returns to p_(t−1), torch's iRprop− stays at p_t (same step size and prev)",
        residual,
        is_zero(residual) and all(gap != 0 for gap in gaps.values()),
        gaps,
    )
