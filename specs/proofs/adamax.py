"""Proofs about Adamax (``specs.adamax``): where torch's ε placement departs from Kingma &
Ba's.
"""

from __future__ import annotations

import sympy

from ..adamax import adamax
from .common import ProofResult, is_zero, symbols_of


def adamax_eps_placement() -> ProofResult:
    """torch's Adamax, u ← max(β2·u, |g| + ε), divides by u; Kingma & Ba's u ← max(β2·u, |g|)
    with ε added outside divides by u + ε. Not the same rule:

    - step 1 from u = 0: both denominators are |g| + ε (residual 0);
    - step 2 with β2·|g1| > |g2|: torch's is β2(|g1| + ε), the paper's β2|g1| + ε, apart by
      (1 − β2)·ε (derived, nonzero).

    By induction (U torch's state, V the paper's): V + β2^k·ε ≤ U ≤ V + ε, k the steps since
    |g| + ε last won the max; so the denominators differ by at most ε, a relative difference
    of the step below ε/(V + ε). With torch's default ε = 1e-8 that is invisible unless the
    gradients themselves are ~1e-8.
    """
    spec = adamax()
    (u,) = symbols_of(spec, "exp_inf")
    (beta2,) = symbols_of(spec, "beta2")
    epsilon, g1 = sympy.symbols("epsilon g1", positive=True)  # eps > 0; a gradient |g1| > 0

    def torch_u(previous, g):
        return sympy.Max(beta2 * previous, g + epsilon)

    def paper_u(previous, g):
        return sympy.Max(beta2 * previous, g)

    rule = dict(spec.updates)[u].xreplace({symbols_of(spec, "eps")[0]: epsilon})
    same_rule = sympy.simplify(rule.xreplace({spec.grad: g1, u: 0}) - torch_u(0, g1))
    first = sympy.simplify(torch_u(0, g1) - (paper_u(0, g1) + epsilon))
    # step 2 with beta2*|g1| > |g2| + eps: the remembered norm wins the max on both sides
    second = sympy.factor(beta2 * torch_u(0, g1) - (beta2 * paper_u(0, g1) + epsilon))
    residual = sympy.ImmutableMatrix([same_rule, first])
    return ProofResult(
        "adamax_eps_placement",
        "Adamax: torch's max(β2·u, |g| + ε) = the paper's max(β2·u, |g|) + ε at step 1 only; "
        f"at step 2 they part by {second}",
        residual,
        is_zero(residual) and second != 0,
        {"step-2 gap (torch - paper)": second},
    )
