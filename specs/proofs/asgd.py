"""Proofs about ASGD (``specs.asgd``): which iterates torch's ``ax`` averages, against
Polyak–Juditsky averaging.
"""

from __future__ import annotations

import sympy

from .. import papers
from ..asgd import asgd
from .common import Env, ProofResult, is_zero, symbolic_step, symbols_of


def asgd_averaging(steps: int = 6) -> ProofResult:
    """ASGD's ``ax`` is the plain average of the iterates, from the (t0 + 2)-th on.

    torch sets μ at the *end* of a step, μ ← 1/max(1, t − t0), and the next step uses it:
    ax ← ax + μ(p − ax). So the step that first averages is t0 + 3, and after T ≥ t0 + 2 steps
    ax = (p_{t0+2} + ⋯ + p_T)/(T − t0 − 1): Polyak–Juditsky averaging, started one iterate
    later than "from t0 + 1" (the first averaged iterate is the one after μ first drops below
    1). Checked for arbitrary iterates p_1..p_T and t0 = 0, 1, 2.
    """
    spec = asgd()
    (mu,) = symbols_of(spec, "mu")
    (ax,) = symbols_of(spec, "ax")
    (t0,) = symbols_of(spec, "t0")
    t = spec.state[0].symbol
    rules = dict(spec.updates)
    iterates = sympy.symbols(f"p1:{steps + 1}", real=True)
    residuals = []
    for start in (0, 1, 2):
        a, m = sympy.S.Zero, sympy.S.One
        for n, p_n in enumerate(iterates, start=1):
            a = rules[ax].xreplace({ax: a, mu: m, spec.param: p_n})
            m = rules[mu].xreplace({t: n, t0: start})
            if n >= start + 2:
                average = sum(iterates[start + 1 : n]) / (n - start - 1)
                residuals.append(sympy.simplify(a - average))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "asgd_averaging",
        f"ASGD: ax after T steps = mean(p_(t0+2), …, p_T), T ≤ {steps}, t0 ∈ {{0, 1, 2}}",
        residual,
        is_zero(residual),
    )


def asgd_polyak_juditsky(steps: int = 6) -> ProofResult:
    """Polyak–Juditsky averaging against torch's ASGD, iterating both specs' rules in order
    from x_0 with arbitrary gradients G_1, G_2, …:

    - the paper spec's ax after T steps is mean(x_0, …, x_{T−1}) of its own iterates (the
      start included, the newest iterate not);
    - torch with λ = 0 (and weight_decay = 0) takes the paper's constant step (α = 0): the
      same iterates;
    - its ax after T steps (t0 = 0) leaves out x_0 and x_1:
      (T + 1)·x̄_{T+1} − x_0 − x_1 = (T − 1)·ax_T; with t0 = −1 it leaves out x_0 only:
      (T + 1)·x̄_{T+1} − x_0 = T·ax_T;
    - λ = 1/lr makes torch's η_{n+1} = lr·(n + 1)^(−α), the paper's γ_{n+1}, but its shrink
      1 − λ·η_1 = 1 − λ·lr is then 0 (derived).
    """
    paper, torch_spec = papers.asgd(), asgd().exact()
    p = paper.param
    t, ax = (var.symbol for var in paper.state)
    (eta,) = symbols_of(paper, "lr")
    constant = {paper.hyper("alpha").symbol: 0}
    x0 = sympy.Symbol("x0", real=True)
    gradients = sympy.symbols(f"G1:{steps + 2}", real=True)
    residuals = []

    env: Env = {p: x0, t: 0, ax: 0}
    iterates, averages = [x0], []
    for n, gradient in enumerate(gradients, start=1):
        env = symbolic_step(paper, env, lambda _, g=gradient: g, constant)
        iterates.append(env[p])
        averages.append(env[ax])
        residuals.append(sympy.simplify(env[ax] - sum(iterates[:n]) / n))

    lambd, wd, t0 = symbols_of(torch_spec, "lambd", "weight_decay", "t0")
    _, rate, mu, torch_ax = (var.symbol for var in torch_spec.state)
    for start, dropped in ((0, 2), (-1, 1)):
        env = {p: x0, t: 0, rate: eta, mu: 1, torch_ax: 0}
        for n, gradient in enumerate(gradients[:steps], start=1):
            hyper = {lambd: 0, wd: 0, t0: start}
            env = symbolic_step(torch_spec, env, lambda _, g=gradient: g, hyper)
            residuals.append(sympy.expand(env[p] - iterates[n]))
            if n >= 2:
                kept = (n + 1) * averages[n] - sum(iterates[:dropped])
                residuals.append(sympy.simplify(kept - (n + 1 - dropped) * env[torch_ax]))

    (power,) = symbols_of(torch_spec, "alpha")
    eta_pos = sympy.Symbol("eta", positive=True)
    rate_rule = dict(torch_spec.updates)[rate]
    for n in range(1, 5):
        coupled = rate_rule.xreplace({lambd: 1 / eta, t: n}).xreplace({eta: eta_pos})
        residuals.append(sympy.simplify(coupled - eta_pos * (n + 1) ** (-power)))
    shrink = sympy.simplify((1 - lambd * rate).xreplace({rate: eta, lambd: 1 / eta}))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "asgd_polyak_juditsky",
        f"ASGD: P–J's ax_T = mean(x_0..x_(T−1)); torch (λ = 0) takes the same iterates, its ax_T "
        f"= mean(x_2..x_T) (t0 = 0), mean(x_1..x_T) (t0 = −1), T ≤ {steps}; λ = 1/lr gives "
        "γ_t = lr·t^(−α) and a first-step shrink 1 − λ·lr = 0",
        residual,
        is_zero(residual) and shrink == 0,
        {"shrink 1 - lambd*eta_1 at lambd = 1/lr": shrink},
    )
