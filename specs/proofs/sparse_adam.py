"""Proofs about SparseAdam (``specs.sparse_adam``): on the elements a gradient names it is dense
Adam with ε scaled by 1/√(1 − β2^t).
"""

from __future__ import annotations

import sympy

from ..adam import adam
from ..sparse_adam import sparse_adam
from .common import ProofResult, is_zero, symbolic_step, symbols_of


def sparse_adam_is_scaled_eps_adam() -> ProofResult:
    """On an element its gradient names, SparseAdam's step is dense Adam's (no weight decay,
    no amsgrad) with eps replaced by eps/√(1 − β2^t): the same moments, and the same param.

    SparseAdam adds eps to √v before the bias correction, lr·√(1 − β2^t)/(1 − β1^t) ·
    m/(√v + eps); Adam adds it to √v̂. For 0 ≤ β2 < 1 and t ≥ 1, 1 − β2^t lies in (0, 1] and is
    replaced by a positive symbol. The elements a gradient does not name are the difference
    that stays: SparseAdam keeps them, dense Adam on a zero gradient would decay m and v.
    """
    sparse, dense = sparse_adam(), adam()
    eta, beta1, beta2, epsilon = symbols_of(sparse, "lr", "beta1", "beta2", "eps")
    (wd,) = symbols_of(dense, "weight_decay")
    m, v = symbols_of(sparse, "exp_avg", "exp_avg_sq")
    t = sparse.state[0].symbol
    g, c2 = sympy.Symbol("g", real=True), sympy.Symbol("c2", positive=True)
    start = {sparse.param: sympy.Symbol("theta", real=True), t: t, m: m, v: v}
    hyper = {eta: eta, beta1: beta1, beta2: beta2, epsilon: epsilon}
    after_sparse = symbolic_step(sparse, start, lambda x: g, hyper)
    scaled = epsilon / sympy.sqrt(1 - beta2 ** (t + 1))
    after_dense = symbolic_step(dense, start, lambda x: g, {**hyper, epsilon: scaled, wd: 0})
    positive = {beta2 ** (t + 1): 1 - c2}
    residual = sympy.ImmutableMatrix(
        [
            sympy.simplify((after_sparse[key] - after_dense[key]).subs(positive))
            for key in (sparse.param, m, v)
        ]
    )
    return ProofResult(
        "sparse_adam_is_scaled_eps_adam",
        "SparseAdam on a named element = Adam (wd = 0) with eps/√(1 − β2^t): param, m, v",
        residual,
        is_zero(residual),
    )
