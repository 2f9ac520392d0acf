"""Symbolic proofs about the specs. Each returns the simplified residual; zero means proved.

The proofs iterate the specs' own equations symbolically (``symbolic_step``), so they are about
the rules the oracles evaluate, not about copies of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import sympy

from . import adafactor as adafactor_spec
from . import lbfgs as lbfgs_spec
from . import muon as muon_spec
from . import papers
from .algorithms import (
    adam,
    adamax,
    asgd,
    nadam,
    radam,
    radam_rho,
    rmsprop,
    rprop,
    sgd,
    sparse_adam,
)
from .core import Spec
from .seed import nesterov_lookahead

Env = dict[sympy.Symbol, sympy.Expr]


@dataclass(frozen=True)
class ProofResult:
    name: str
    statement: str
    residual: sympy.Expr  # a Matrix when several quantities must vanish
    proved: bool
    derived: Mapping[str, sympy.Expr] = field(default_factory=dict)  # e.g. a derived rescaling


def _is_zero(residual) -> bool:
    if isinstance(residual, sympy.MatrixBase):
        return all(entry == 0 for entry in residual)
    return residual == 0


def symbolic_step(
    spec: Spec, env: Env, gradient: Callable[[sympy.Expr], sympy.Expr], hyper: Env, first=False
) -> Env:
    """One step of ``spec`` on symbolic values; the gradient is taken at ``spec.grad_at``.

    Gradient arguments are expanded so that equal points give syntactically equal calls of an
    undefined gradient function (``expand`` is an identity, so nothing is assumed).
    """
    env = {**env, **hyper}
    point = sympy.expand(spec.grad_at.xreplace(env))
    env[spec.grad] = gradient(point)
    rules = spec.first_updates if first else spec.updates
    for target, expr in rules:
        env[target] = expr.xreplace(env)
    return env


def _symbols(spec: Spec, *names: str) -> list[sympy.Symbol]:
    by_name = {h.name: h.symbol for h in spec.hypers} | {v.name: v.symbol for v in spec.state}
    return [by_name[name] for name in names]


def nesterov_rewrite(steps: int = 3) -> ProofResult:
    """torch's Nesterov (gradient at x', direction g + μ·v) is look-ahead Nesterov, x' = x − η·μ·v.

    Checked for an arbitrary gradient function, constant η, from a fresh state (torch's first step
    sets the buffer to g) and from an arbitrary started buffer v0.
    """
    G = sympy.Function("G")
    torch_spec, lookahead = sgd(momentum=True, nesterov=True), nesterov_lookahead()
    eta, mu, tau, wd = _symbols(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (v,) = _symbols(lookahead, "momentum_buffer")
    (b,) = _symbols(torch_spec, "momentum_buffer")
    lookahead_hyper = dict(zip(_symbols(lookahead, "lr", "momentum"), (eta, mu), strict=True))
    torch_hyper = {tau: sympy.S.Zero, wd: sympy.S.Zero}
    x0, v0 = sympy.symbols("x0 v0", real=True)
    p = torch_spec.param
    residuals = []
    for start in (sympy.S.Zero, v0):
        x_env: Env = {p: x0, v: start}
        y_env: Env = {p: x0 - eta * mu * start, b: start}
        for k in range(steps):
            x_env = symbolic_step(lookahead, x_env, G, lookahead_hyper)
            fresh = k == 0 and start == 0
            y_env = symbolic_step(torch_spec, y_env, G, torch_hyper, first=fresh)
            residuals += [y_env[p] - (x_env[p] - eta * mu * x_env[v]), y_env[b] - x_env[v]]
    residual = sympy.ImmutableMatrix([sympy.simplify(r) for r in residuals])
    return ProofResult(
        "nesterov_rewrite",
        f"torch SGD(nesterov) iterate = x − η·μ·v of look-ahead Nesterov, {steps} steps, any G",
        residual,
        _is_zero(residual),
    )


def nesterov_lr_schedule(steps: int = 3) -> ProofResult:
    """With a learning rate that changes between steps, torch's Nesterov is no longer Nesterov.

    Reference: Sutskever et al. (2013), d ← μ·d − η_k·∇f(θ + μ·d), θ ← θ + d, whose velocity is
    in parameter units. torch's buffer b is in gradient units (d = −η·b), and torch's param is the
    look-ahead point θ + μ·d. The identity holds only while η is constant: after a change
    η_old → η_new the carried momentum is η_new·μ·b instead of η_old·μ·b, and the iterates part
    by −μ²·(η_new − η_old)·G(x0) after the first changed step (residual below).

    Solving for a rescaling c of the buffer before the changed step gives c = η_old/η_new, and with
    that rescaling at every change the identity holds again, for any schedule.

    For users of LR schedulers with ``nesterov=True`` (and plain momentum alike): torch does not
    rescale ``momentum_buffer``, so each LR change scales the remembered momentum by
    η_new/η_old at once (a decaying schedule also damps the momentum, a warm-up amplifies it).
    Usually harmless, but to follow Sutskever's schedule exactly, multiply every
    ``state["momentum_buffer"]`` by η_old/η_new whenever the scheduler changes the LR.
    """
    G = sympy.Function("G")
    torch_spec = sgd(momentum=True, nesterov=True)
    eta, mu, tau, wd = _symbols(torch_spec, "lr", "momentum", "dampening", "weight_decay")
    (b,) = _symbols(torch_spec, "momentum_buffer")
    p = torch_spec.param
    x0, c = sympy.symbols("x0 c", real=True)
    etas = sympy.symbols(f"eta0:{steps}", positive=True)

    def sutskever(theta, d, rate):
        d = mu * d - rate * G(sympy.expand(theta + mu * d))
        return theta + d, d

    def gap(rescale: Callable[[int], sympy.Expr], count: int) -> sympy.Expr:
        theta, d = x0, sympy.S.Zero
        env: Env = {p: x0}
        for k in range(count):
            if k:
                env[b] = rescale(k) * env[b]
            hyper = {eta: etas[k], tau: sympy.S.Zero, wd: sympy.S.Zero}
            env = symbolic_step(torch_spec, env, G, hyper, first=k == 0)
            theta, d = sutskever(theta, d, etas[k])
        # torch's param is the look-ahead point θ + μ·d
        return sympy.simplify(env[p] - (theta + mu * d))

    two_step_gap = gap(lambda k: c, 2)
    (rescale,) = sympy.solve(two_step_gap, c)
    unrescaled = sympy.factor(two_step_gap.subs(c, 1))
    residual = gap(lambda k: etas[k - 1] / etas[k], steps)
    restored = residual == 0 and sympy.simplify(rescale - etas[0] / etas[1]) == 0
    return ProofResult(
        "nesterov_lr_schedule",
        f"η changing each step: torch ≠ Sutskever (gap {unrescaled}); "
        f"rescaling b ← ({rescale})·b at each change restores it over {steps} steps",
        residual,
        restored and unrescaled != 0,
        {"unrescaled_residual": unrescaled, "buffer_rescale": rescale},
    )


def adam_implementable_form() -> ProofResult:
    """torch's Adam step, lr/(1−β1^t)·m/(√v/√(1−β2^t) + eps), equals the spec's m̂/(√v̂ + eps).

    For 0 ≤ β < 1 and t ≥ 1, 1 − β^t lies in (0, 1], so it is replaced by a positive symbol;
    v ≥ 0 always (a sum of squares). Checked with and without amsgrad (max taken first).
    """
    residuals = []
    for spec in (adam(), adam(amsgrad=True)):
        eta, beta1, beta2, epsilon = _symbols(spec, "lr", "beta1", "beta2", "eps")
        second = spec.state[-1].symbol  # exp_avg_sq, or max_exp_avg_sq with amsgrad
        (m,) = _symbols(spec, "exp_avg")
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
        _is_zero(residual),
    )


def ema_lerp_form() -> ProofResult:
    """The lerp form torch uses, m + (1−β)(g − m), is the textbook EMA β·m + (1−β)·g."""
    residuals = []
    for spec, hyper_name, state_name in (
        (adam(), "beta1", "exp_avg"),
        (rmsprop(centered=True), "alpha", "grad_avg"),
    ):
        (beta,) = _symbols(spec, hyper_name)
        (m,) = _symbols(spec, state_name)
        rule = dict(spec.updates)[m]
        residuals.append(sympy.simplify(rule - (beta * m + (1 - beta) * spec.grad)))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "ema_lerp_form",
        "lerp EMA (Adam exp_avg, RMSprop grad_avg) = β·m + (1−β)·g",
        residual,
        _is_zero(residual),
    )


def _iterate_on_quadratic(spec: Spec, hyper: Env, a: sympy.Symbol, x0, steps: int) -> list:
    env: Env = {spec.param: x0}
    trajectory = [x0]
    for k in range(steps):
        lazy = spec.first_updates is not None and k == 0
        env = symbolic_step(spec, env, lambda x: a * x, hyper, first=lazy)
        trajectory.append(env[spec.param])
    return trajectory


def quadratic_closed_forms(steps: int = 6) -> ProofResult:
    """On f = ½·a·x², GD and heavy-ball momentum (with dampening) have closed forms (rsolve).

    GD: x_{k+1} = (1 − η·a)·x_k. Heavy ball: eliminating the buffer (η·b_k = x_{k−1} − x_k)
    gives x_{k+2} = (1 + μ − η·(1−τ)·a)·x_{k+1} − μ·x_k with x_1 = (1 − η·a)·x_0, because
    torch's first step takes b = g undamped. Both closed forms equal the spec iterated.
    """
    a, x0 = sympy.symbols("a x0", real=True)
    k = sympy.Symbol("k", integer=True, nonnegative=True)
    x = sympy.Function("x")
    residuals = []

    plain = sgd()
    eta, wd = _symbols(plain, "lr", "weight_decay")
    gd_closed = sympy.rsolve(x(k + 1) - (1 - eta * a) * x(k), x(k), {x(0): x0})
    gd_iterates = _iterate_on_quadratic(plain, {wd: 0}, a, x0, steps)
    residuals += [sympy.expand(gd_closed.subs(k, n) - xn) for n, xn in enumerate(gd_iterates)]

    heavy = sgd(momentum=True)
    eta, mu, tau, wd = _symbols(heavy, "lr", "momentum", "dampening", "weight_decay")
    recurrence = x(k + 2) - (1 + mu - eta * (1 - tau) * a) * x(k + 1) + mu * x(k)
    hb_closed = sympy.rsolve(recurrence, x(k), {x(0): x0, x(1): (1 - eta * a) * x0})
    hb_iterates = _iterate_on_quadratic(heavy, {wd: 0}, a, x0, steps)
    residuals += [
        sympy.simplify(sympy.expand(hb_closed.subs(k, n)) - sympy.expand(xn))
        for n, xn in enumerate(hb_iterates)
    ]
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "quadratic_closed_forms",
        f"f = a·x²/2: GD x_k = {gd_closed}; heavy-ball rsolve closed form = spec, k ≤ {steps}",
        residual,
        _is_zero(residual),
        {"gd": gd_closed, "heavy_ball": hb_closed},
    )


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


def nadam_mu_product(steps: int = 6) -> ProofResult:
    """NAdam's ``mu_product`` state, updated as Π ← Π·μ_t from Π = 1, is the running product
    μ_1⋯μ_t of the momentum schedule (the exact rule: torch rounds Π into float32 each step,
    which the oracle takes as stored). The rule is iterated as the spec writes it, with the
    step counter's own rule."""
    spec = nadam().exact()
    (product,) = _symbols(spec, "mu_product")
    t = spec.state[0].symbol
    beta1, psi = _symbols(spec, "beta1", "momentum_decay")
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
        _is_zero(residual),
    )


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
    (u,) = _symbols(spec, "exp_inf")
    (beta2,) = _symbols(spec, "beta2")
    epsilon, g1 = sympy.symbols("epsilon g1", positive=True)  # eps > 0; a gradient |g1| > 0

    def torch_u(previous, g):
        return sympy.Max(beta2 * previous, g + epsilon)

    def paper_u(previous, g):
        return sympy.Max(beta2 * previous, g)

    rule = dict(spec.updates)[u].xreplace({_symbols(spec, "eps")[0]: epsilon})
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
        _is_zero(residual) and second != 0,
        {"step-2 gap (torch - paper)": second},
    )


def asgd_averaging(steps: int = 6) -> ProofResult:
    """ASGD's ``ax`` is the plain average of the iterates, from the (t0 + 2)-th on.

    torch sets μ at the *end* of a step, μ ← 1/max(1, t − t0), and the next step uses it:
    ax ← ax + μ(p − ax). So the step that first averages is t0 + 3, and after T ≥ t0 + 2 steps
    ax = (p_{t0+2} + ⋯ + p_T)/(T − t0 − 1): Polyak–Juditsky averaging, started one iterate
    later than "from t0 + 1" (the first averaged iterate is the one after μ first drops below
    1). Checked for arbitrary iterates p_1..p_T and t0 = 0, 1, 2.
    """
    spec = asgd()
    (mu,) = _symbols(spec, "mu")
    (ax,) = _symbols(spec, "ax")
    (t0,) = _symbols(spec, "t0")
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
        _is_zero(residual),
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

    With both changed, ``papers.nadam`` is ``algorithms.nadam().exact()`` output for output.
    Why the paper's bias correction is 1 − Π_t: under a constant gradient G its m is
    (1 − Π_t)·G after t steps (checked for t ≤ ``steps``), so m/(1 − Π_t) = G; torch's m is
    (1 − β1^t)·G, which it divides by 1 − Π_{t+1} all the same. Each change moves the step
    (derived at torch's defaults, eps = 0, first step from a fresh state: torch's step over the
    paper's, and over each half-way form).
    """
    torch_spec = nadam().exact()
    (wd,) = _symbols(torch_spec, "weight_decay")
    torch_out = torch_spec.final_expressions()
    aligned = papers.nadam(scheduled_ema=False, nu_in_n_hat=False)
    aligned_out = aligned.final_expressions()
    residuals = [
        _rational_residual(torch_out[name].xreplace({wd: 0}) - aligned_out[name])
        for name in torch_spec.outputs
    ]

    G, x0 = sympy.symbols("G x0", real=True)
    beta1 = _symbols(torch_spec, "beta1")[0]
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
    defaults[_symbols(paper, "eps")[0]] = sympy.S.Zero

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
        _is_zero(residual) and differs,
        ratios,
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
    beta2, epsilon = _symbols(torch_spec, "beta2", "eps")
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
    (v,) = _symbols(torch_spec, "exp_avg_sq")
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
        (symbol,) = _symbols(torch_spec, state_name)
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
        _is_zero(residual)
        and thresholds == (4, 5)
        and edges == (sympy.Rational(3, 5), sympy.Rational(2, 3)),
        derived,
    )


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
        _is_zero(residual) and all(gap != 0 for gap in gaps.values()),
        gaps,
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
    (eta,) = _symbols(paper, "lr")
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

    lambd, wd, t0 = _symbols(torch_spec, "lambd", "weight_decay", "t0")
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

    (power,) = _symbols(torch_spec, "alpha")
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
        _is_zero(residual) and shrink == 0,
        {"shrink 1 - lambd*eta_1 at lambd = 1/lr": shrink},
    )


def sparse_adam_is_scaled_eps_adam() -> ProofResult:
    """On an element its gradient names, SparseAdam's step is dense Adam's (no weight decay,
    no amsgrad) with eps replaced by eps/√(1 − β2^t): the same moments, and the same param.

    SparseAdam adds eps to √v before the bias correction, lr·√(1 − β2^t)/(1 − β1^t) ·
    m/(√v + eps); Adam adds it to √v̂. For 0 ≤ β2 < 1 and t ≥ 1, 1 − β2^t lies in (0, 1] and is
    replaced by a positive symbol. The elements a gradient does not name are the difference
    that stays: SparseAdam keeps them, dense Adam on a zero gradient would decay m and v.
    """
    sparse, dense = sparse_adam(), adam()
    eta, beta1, beta2, epsilon = _symbols(sparse, "lr", "beta1", "beta2", "eps")
    (wd,) = _symbols(dense, "weight_decay")
    m, v = _symbols(sparse, "exp_avg", "exp_avg_sq")
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
        _is_zero(residual),
    )


def adafactor_rank_one_reconstruction() -> ProofResult:
    """At the first step (w_1 = 1^c = 1) of a 2×3 param whose g² is rank one, g_ij = r_i k_j,
    the factored estimate R'_i C'_j / mean_i R'_i is g_ij² exactly: Adafactor's factorisation
    loses nothing on rank-one second moments (eps1 below the mean row factor)."""
    symbols, outputs = adafactor_spec.slice_statement(2, 3)
    r = sympy.symbols("r:2", positive=True)
    k = sympy.symbols("k:3", positive=True)
    grads = {symbols[3 * i + j]: r[i] * k[j] for i in range(2) for j in range(3)}
    first = {adafactor_spec.T: 1, adafactor_spec.EPS1: 0}
    zero_state = {x: 0 for x in symbols[6:11]}
    env = {**grads, **first, **zero_state}
    estimate = [(g / u) ** 2 for g, u in zip(grads.values(), outputs["update"], strict=True)]
    residual = sympy.ImmutableMatrix(
        [
            sympy.simplify(e.xreplace(env) - g**2)
            for e, g in zip(estimate, grads.values(), strict=True)
        ]
    )
    return ProofResult(
        "adafactor_rank_one_reconstruction",
        "t = 1, g_ij = r_i k_j: R'_i C'_j / mean R' = g_ij² (the factored estimate is exact)",
        residual,
        _is_zero(residual),
    )


def adafactor_factors_are_weighted_means(steps: int = 4) -> ProofResult:
    """The row factor after t steps is a weighted mean of the t row means seen, with weights
    w_k Π_{j>k} (1 − w_j) that sum to 1 for any w_2..w_t, because w_1 = 1^c = 1: the starting
    value drops out and no bias correction is needed (unlike Adam's EMA from zero)."""
    start = sympy.Symbol("R0", nonnegative=True)
    means = sympy.symbols(f"a1:{steps + 1}", nonnegative=True)
    weights = [sympy.Integer(1) ** adafactor_spec.C, *sympy.symbols(f"w2:{steps + 1}")]
    value = start
    for w, a in zip(weights, means, strict=True):
        value = adafactor_spec.ema(value, a, w)
    value = sympy.expand(value)
    total = sum(value.coeff(a) for a in means)
    residual = sympy.ImmutableMatrix([sympy.simplify(total - 1), value.coeff(start)])
    return ProofResult(
        "adafactor_factors_are_weighted_means",
        f"R_{steps} = Σ_k w_k Π_(j>k)(1 − w_j) a_k with weights summing to 1; R_0 drops out",
        residual,
        _is_zero(residual),
    )


def _rotation(t: sympy.Symbol) -> sympy.Matrix:
    """A 2×2 rotation, rationally parametrised (cos, sin) = ((1 − t²), 2t)/(1 + t²)."""
    c, s = (1 - t**2) / (1 + t**2), 2 * t / (1 + t**2)
    return sympy.Matrix([[c, -s], [s, c]])


def muon_newton_schulz_on_svd() -> ProofResult:
    """torch's Newton–Schulz step, a X + (b G + c G G) X with G = X Xᵀ, maps X = U diag(s) Vᵀ
    to U diag(p(s)) Vᵀ, p(x) = a x + b x³ + c x⁵: it acts on the singular values alone, so k
    steps apply p∘…∘p to them. (2×2, any rotations U and V, symbolic a, b, c, s.)"""
    a, b, c = sympy.symbols("a b c", real=True)
    s = sympy.symbols("s1 s2", nonnegative=True)
    u, v = _rotation(sympy.Symbol("t", real=True)), _rotation(sympy.Symbol("q", real=True))
    x = u * sympy.diag(*s) * v.T
    gram = x * x.T
    torch_step = a * x + (b * gram + c * gram * gram) * x
    p = [a * si + b * si**3 + c * si**5 for si in s]
    residual = sympy.simplify(torch_step - u * sympy.diag(*p) * v.T)
    composed = muon_spec.composition((3.4445, -4.7750, 2.0315), 2)
    return ProofResult(
        "muon_newton_schulz_on_svd",
        "a X + (b XXᵀ + c (XXᵀ)²) X = U diag(p(σ)) Vᵀ for X = U diag(σ) Vᵀ",
        sympy.ImmutableMatrix(residual),
        _is_zero(residual),
        {"p∘p at torch's coefficients, slope at 0": composed.coeff_monomial(muon_spec.X)},
    )


def muon_scale_invariance() -> ProofResult:
    """The orthogonalised update of κB equals that of B for every κ > 0 with κ‖B‖ above eps:
    Newton–Schulz starts from B/‖B‖_F (2×2 symbolic). In floating point κ = 2^k scales every
    rounding exactly (no overflow, no underflow), so the harness checks this bit for bit."""
    entries = sympy.Matrix(2, 2, sympy.symbols("b:4", real=True))
    kappa = sympy.Symbol("kappa", positive=True)

    def normalised(m):
        return m / sympy.sqrt(sum(e**2 for e in m))

    residual = sympy.simplify(normalised(kappa * entries) - normalised(entries))
    return ProofResult(
        "muon_scale_invariance",
        "(κB)/‖κB‖_F = B/‖B‖_F for κ > 0: the Newton–Schulz input, hence the update, is unchanged",
        sympy.ImmutableMatrix(residual),
        _is_zero(residual),
    )


def lbfgs_two_loop_is_bfgs_product() -> ProofResult:
    """The two-loop recursion returns −H g for H the BFGS recursion from γI over the stored
    pairs, oldest first (n = 3, m = 2 and n = 2, m = 3; symbolic s_i, y_i, g, γ and ρ_i: the
    identity holds for any ρ_i, 1/(y_iᵀs_i) included)."""
    residuals = []
    for n, m in ((3, 2), (2, 3)):
        pairs, g, gamma = lbfgs_spec.symbolic_pairs(n, m)
        h = lbfgs_spec.inverse_hessian(pairs, gamma, sympy.eye(n))
        residuals.extend(sympy.expand(-h * g - lbfgs_spec.two_loop(g, pairs, gamma)))
    residual = sympy.ImmutableMatrix(residuals)
    return ProofResult(
        "lbfgs_two_loop_is_bfgs_product",
        "two-loop(g; (s_i, y_i, ρ_i), γ) = −[BFGS recursion from γI] g",
        residual,
        _is_zero(residual),
    )


ALL_PROOFS: list[Callable[[], ProofResult]] = [
    nesterov_rewrite,
    nesterov_lr_schedule,
    adam_implementable_form,
    ema_lerp_form,
    quadratic_closed_forms,
    radam_rho_closed_form,
    nadam_mu_product,
    adamax_eps_placement,
    asgd_averaging,
    nadam_dozat_vs_torch,
    radam_threshold_band,
    rprop_backtracking,
    asgd_polyak_juditsky,
    sparse_adam_is_scaled_eps_adam,
    adafactor_rank_one_reconstruction,
    adafactor_factors_are_weighted_means,
    muon_newton_schulz_on_svd,
    muon_scale_invariance,
    lbfgs_two_loop_is_bfgs_product,
]
