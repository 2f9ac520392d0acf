"""Proofs about NAdam (``specs.nadam``): ``mu_product`` is the running product of the momentum
schedule, and torch's rule is Dozat's Algorithm 2 with exactly two changes.
"""

from __future__ import annotations

import sympy

from .. import papers
from ..core import Spec
from ..nadam import nadam
from .common import Env, ProofResult, is_zero, symbolic_step, symbols_of


def nadam_mu_product(steps: int = 6) -> ProofResult:
    """NAdam's ``mu_product`` state, updated as Π ← Π·μ_t from Π = 1, is the running product
    μ_1⋯μ_t of the momentum schedule (the exact rule: torch rounds Π into float32 each step,
    which the oracle takes as stored). The rule is iterated as the spec writes it, with the
    step counter's own rule."""
    spec = nadam().exact()
    (product,) = symbols_of(spec, "mu_product")
    t = spec.state[0].symbol
    beta1, psi = symbols_of(spec, "beta1", "momentum_decay")
    rules = dict(spec.updates)
    k = sympy.Symbol("k", integer=True, positive=True)
    mu_k = beta1 * (1 - sympy.Rational(1, 2) * sympy.Rational(24, 25) ** (k * psi))
    value, count, residuals = sympy.S.One, sympy.S.Zero, []
    for n in range(1, steps + 1):
        count = rules[t].xreplace({t: count})
        value = rules[product].xreplace({product: value, t: count})
        residuals.append(sympy.simplify(value - sympy.product(mu_k, (k, 1, n))))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "nadam_mu_product",
        f"NAdam: mu_product after t steps = μ_1⋯μ_t, μ_k = β1(1 − ½·0.96^(kψ)), t ≤ {steps}",
        residual,
        is_zero(residual),
    )


def _rational_residual(expr: sympy.Expr) -> sympy.Expr:
    """``expr`` with each power whose exponent is not an integer (0.96^(tψ), β2^t, square
    roots) replaced by one fresh symbol per distinct power, then cancelled as a rational
    function. Zero proves ``expr`` zero (equal powers stand for equal values); much faster
    than ``simplify`` on NAdam's nested schedule."""
    generic: dict[sympy.Expr, sympy.Dummy] = {}

    def stand_in(power: sympy.Expr) -> sympy.Dummy:
        return generic.setdefault(power, sympy.Dummy())

    opaque = expr.replace(lambda e: e.is_Pow and not e.exp.is_Integer, stand_in)
    return sympy.cancel(sympy.together(opaque))


def nadam_dozat_vs_torch(steps: int = 3) -> ProofResult:
    """torch's NAdam is Dozat's Algorithm 2 with two changes, and only those (weight_decay = 0,
    Π_t exact):

    - the first moment: torch's m ← β1·m + (1 − β1)·g with a constant β1; Dozat's
      m ← μ_t·m + (1 − μ_t)·g with the scheduled μ_t;
    - the second: torch's v/(1 − β2^t), Dozat's n̂ = ν·n/(1 − ν^t).

    With both changed, ``papers.nadam`` is ``specs.nadam.nadam().exact()`` output for output.
    Why the paper's bias correction is 1 − Π_t: under a constant gradient G its m is
    (1 − Π_t)·G after t steps (checked for t ≤ ``steps``), so m/(1 − Π_t) = G; torch's m is
    (1 − β1^t)·G, which it divides by 1 − Π_{t+1} all the same. Each change moves the step
    (derived at torch's defaults, eps = 0, first step from a fresh state: torch's step over the
    paper's, and over each half-way form).
    """
    torch_spec = nadam().exact()
    (wd,) = symbols_of(torch_spec, "weight_decay")
    torch_out = torch_spec.final_expressions()
    aligned = papers.nadam(scheduled_ema=False, nu_in_n_hat=False)
    aligned_out = aligned.final_expressions()
    residuals = [
        _rational_residual(torch_out[name].xreplace({wd: 0}) - aligned_out[name])
        for name in torch_spec.outputs
    ]

    G, x0 = sympy.symbols("G x0", real=True)
    beta1 = symbols_of(torch_spec, "beta1")[0]
    step, product, m, v = (var.symbol for var in torch_spec.state)

    def run(spec: Spec, count: int, hyper: Env) -> Env:
        env: Env = {spec.param: x0, step: 0, product: 1, m: 0, v: 0}
        for _ in range(count):
            env = symbolic_step(spec, env, lambda _: G, hyper)
        return env

    paper = papers.nadam()
    for n in range(1, steps + 1):
        paper_env, torch_env = run(paper, n, {}), run(torch_spec, n, {wd: 0})
        residuals.append(sympy.simplify(paper_env[m] - (1 - paper_env[product]) * G))
        residuals.append(sympy.simplify(torch_env[m] - (1 - beta1**n) * G))

    defaults = {h.symbol: sympy.Float(h.default, 30) for h in paper.hypers}
    defaults[symbols_of(paper, "eps")[0]] = sympy.S.Zero

    def first_step(spec: Spec) -> sympy.Expr:
        hyper = {**defaults, wd: 0} if spec is torch_spec else defaults
        return sympy.N(x0 - run(spec, 1, hyper)[spec.param], 30).xreplace({G: 1})

    torch_step = first_step(torch_spec)
    changed = (paper, papers.nadam(scheduled_ema=False), papers.nadam(nu_in_n_hat=False))
    ratios = {
        f"torch/{form.name} first step": sympy.N(torch_step / first_step(form), 6)
        for form in changed
    }
    residuals.append(sympy.N(torch_step - first_step(aligned), 25))
    residual = sympy.ImmutableMatrix(residuals)
    differs = all(abs(ratio - 1) > 1e-6 for ratio in ratios.values())
    return ProofResult(
        "nadam_dozat_vs_torch",
        "NAdam: torch = Dozat's Algorithm 2 with β1 for μ_t in the m EMA and no ν in n̂ "
        f"(all outputs); Dozat's m = (1 − Π_t)·G, torch's (1 − β1^t)·G for constant G, t ≤ {steps}",
        residual,
        is_zero(residual) and differs,
        ratios,
    )
