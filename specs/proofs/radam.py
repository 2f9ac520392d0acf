"""Proofs about RAdam (``specs.radam``): ρ_t's closed form, and where torch's rectification
threshold (ρ_t > 5) parts from Liu et al.'s (ρ_t > 4).
"""

from __future__ import annotations

import sympy

from .. import papers
from ..radam import radam, radam_rho
from .common import ProofResult, is_zero, symbols_of


def _generic_branch(expr: sympy.Expr) -> sympy.Expr:
    """The ``True`` branch of a Piecewise that SymPy splits off for a boundary value outside the
    domain (β = 1 in a geometric sum over 0 ≤ β < 1)."""
    if isinstance(expr, sympy.Piecewise):
        return expr.args[-1][0]
    return expr


def radam_rho_closed_form(betas=(0.9, 0.99, 0.999, 0.9999)) -> ProofResult:
    """RAdam's ρ_t = ρ_∞ − 2tβ^t/(1 − β^t) is the length f of the simple moving average whose
    centre of mass equals that of the bias-corrected EMA of g² (Liu et al. 2019, eq. 4):

    the EMA weights (1 − β)β^(t−i)/(1 − β^t), i = 1..t, have centre of mass c; an SMA of the
    last f values has t − (f − 1)/2; so f = 2(t − c) + 1, and f − ρ_t simplifies to 0 for
    0 ≤ β < 1. Derived beside it: the first step where torch rectifies (ρ_t > 5) for common β2,
    and the paper's threshold (ρ_t > 4); ρ_∞ ≤ 5 (β2 ≤ 2/3) never rectifies.
    """
    beta = sympy.Symbol("beta2", positive=True)
    t, i = sympy.symbols("t i", integer=True, positive=True)
    centre = sympy.summation((1 - beta) * beta ** (t - i) * i, (i, 1, t)) / (1 - beta**t)
    rho_inf, rho_t = radam_rho(beta, t)
    residual = _generic_branch(sympy.simplify(sympy.piecewise_fold(2 * (t - centre) + 1 - rho_t)))

    def first_step(b, threshold):
        b = sympy.nsimplify(b)
        for n in range(1, 10_000):
            if rho_t.subs({beta: b, t: n}) > threshold:
                return n
        return None

    derived = {
        f"first rectified step, beta2={b} (torch: rho_t > 5; paper: > 4)": sympy.Tuple(
            first_step(b, 5), first_step(b, 4)
        )
        for b in betas
    }
    derived["never rectified iff beta2 <="] = sympy.solve(sympy.Eq(rho_inf, 5), beta)[0]
    return ProofResult(
        "radam_rho_closed_form",
        "RAdam: ρ_t = ρ_∞ − 2tβ2^t/(1 − β2^t) = 2(t − centre of mass of the EMA) + 1",
        residual,
        residual == 0,
        derived,
    )


def _threshold(condition: sympy.Basic, rho: sympy.Expr) -> sympy.Expr:
    """k for a branch condition that reads ρ > k (SymPy may have moved terms across)."""
    if isinstance(condition, sympy.StrictGreaterThan):
        excess = condition.lhs - condition.rhs
    elif isinstance(condition, sympy.StrictLessThan):
        excess = condition.rhs - condition.lhs
    else:
        return sympy.nan
    return sympy.simplify(rho - excess)


def radam_threshold_band(
    betas=("9/10", "99/100", "999/1000", "9999/10000", "4/5", "7/10", "13/20"),
) -> ProofResult:
    """Liu et al.'s RAdam and torch's agree except at the steps with 4 < ρ_t ≤ 5.

    With eps = 0 (torch's only other change), for v > 0: torch's rectified step
    m̂·r_t·sqrt(1 − β2^t)/sqrt(v) is the paper's r_t·m̂·sqrt((1 − β2^t)/v), the unrectified
    steps are both m̂, and the moments are the same EMAs (and the paper spec's
    −expm1(t·log1p(β2 − 1)) is 1 − β2^t). So the rules part exactly where one branch is
    taken and not the other: 4 < ρ_t ≤ 5 (the paper rectifies, torch does not).

    ρ_t increases with t, so those steps are one run: 2tβ^t/(1 − β^t) = (2/c)·h(ct) with
    c = −log β > 0 and h(u) = u/(e^u − 1), whose derivative has numerator
    N(u) = e^u − 1 − u·e^u with N(0) = 0 and N'(u) = −u·e^u < 0 for u > 0 (checked below),
    so h decreases. The run is computed exactly for each β2 (rationals). ρ_t < ρ_∞ for every
    t and 2tβ^t/(1 − β^t) → 0: where 4 < ρ_∞ ≤ 5, i.e. 3/5 < β2 ≤ 2/3 (solved below), the
    paper rectifies from some step on and torch never does.
    """
    torch_spec, paper = radam(), papers.radam()
    beta2, epsilon = symbols_of(torch_spec, "beta2", "eps")
    t = torch_spec.state[0].symbol
    p = torch_spec.param
    rules = dict(paper.updates)
    bias2, rho = papers.BIAS2, papers.RHO
    c_expr = rules[bias2]
    plain = {bias2: 1 - beta2**t}
    paper_rule = rules[p].xreplace({rho: rules[rho]}).xreplace(plain)
    torch_rule = dict(torch_spec.updates)[p].xreplace({epsilon: 0})
    # positive stand-ins: v > 0, 1 − β2^t = c > 0 for t ≥ 1
    v_pos, c = sympy.symbols("v c", positive=True)
    (v,) = symbols_of(torch_spec, "exp_avg_sq")
    positive = {v: v_pos, beta2**t: 1 - c}

    def branch(rule, index):
        return rule.args[index][0].xreplace({v: v_pos}).subs(positive)

    # the branch conditions, read off the specs: the paper's ρ_t > 4, torch's decided ρ_t > 5
    rho_t = radam_rho(beta2, t)[1]
    (torch_branch,) = torch_spec.decided.values()
    thresholds = (
        _threshold(rules[p].args[0][1].xreplace({rho: rules[rho]}).xreplace(plain), rho_t),
        _threshold(torch_branch.args[0][1], rho_t),
    )
    residuals = [
        sympy.simplify(sympy.expand_func(c_expr).rewrite(sympy.Pow) - (1 - beta2**t)),
        sympy.simplify(branch(torch_rule, 0) - branch(paper_rule, 0)),
        sympy.simplify(branch(torch_rule, 1) - branch(paper_rule, 1)),
    ]
    for state_name in ("exp_avg", "exp_avg_sq"):
        (symbol,) = symbols_of(torch_spec, state_name)
        residuals.append(
            sympy.expand(dict(torch_spec.updates)[symbol] - dict(paper.updates)[symbol])
        )

    # monotonicity of rho_t in t
    u, cc = sympy.symbols("u c_log", positive=True)
    h = u / (sympy.exp(u) - 1)
    numerator = sympy.exp(u) - 1 - u * sympy.exp(u)
    tt = sympy.Symbol("t", positive=True)
    residuals += [
        sympy.simplify(
            (2 * tt * sympy.exp(-cc * tt) / (1 - sympy.exp(-cc * tt)))
            - (2 / cc) * h.subs(u, cc * tt)
        ),
        sympy.simplify(sympy.diff(h, u) * (sympy.exp(u) - 1) ** 2 - numerator),
        numerator.subs(u, 0),
        sympy.simplify(sympy.diff(numerator, u) + u * sympy.exp(u)),
        sympy.limit(2 * tt * sympy.exp(-cc * tt) / (1 - sympy.exp(-cc * tt)), tt, sympy.oo),
    ]

    b = sympy.Symbol("beta2", positive=True)
    n = sympy.Symbol("t", integer=True, positive=True)
    rho_inf, rho_t = radam_rho(b, n)
    low, high = thresholds
    edges = tuple(sympy.solve(sympy.Eq(rho_inf, k), b)[0] for k in thresholds)

    def first_above(value, threshold):
        if rho_inf.subs(b, value) <= threshold:  # ρ_t < ρ_∞: never
            return sympy.oo
        return next(k for k in range(1, 10**6) if rho_t.subs({b: value, n: k}) > threshold)

    def band(value):
        value = sympy.Rational(value)
        start, stop = first_above(value, low), first_above(value, high)
        if stop == sympy.oo:
            return sympy.Range(start, sympy.oo) if start != sympy.oo else sympy.Tuple()
        return sympy.Tuple(*range(start, stop))

    derived = {
        f"steps with {low} < rho_t <= {high}, beta2 = {value}": band(value) for value in betas
    }
    derived[f"{low} < rho_inf <= {high} (paper rectifies, torch never) iff beta2 in"] = (
        sympy.Interval.Lopen(*edges)
    )
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "radam_threshold_band",
        "RAdam, eps = 0: Liu et al.'s rectified and unrectified steps are torch's; ρ_t "
        "increases in t; the rules part exactly at the steps with 4 < ρ_t ≤ 5",
        residual,
        is_zero(residual)
        and thresholds == (4, 5)
        and edges == (sympy.Rational(3, 5), sympy.Rational(2, 3)),
        derived,
    )
