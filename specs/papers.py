"""The papers' own update rules as named variants, where torch's form differs from them.

Each variant is the algorithm as its paper writes it, with hyperparameter and state names reused
from torch's class so one harness can drive both. ``notes`` says where torch differs, and
``specs.proofs`` proves the differences (and the agreements) the notes state.
"""

from __future__ import annotations

import sympy
from sympy.codegen.cfunctions import expm1, log1p

from .building_blocks import betas, eps, hyperparameter, lr, state, step_counter
from .core import GRAD, PARAM, STEP, Spec, StateVar
from .nadam import momentum_schedule
from .radam import radam_rectification, radam_rho

p, g, t = PARAM, GRAD, STEP

PREFIX = "paper:"


MU = sympy.Symbol("mu_t", positive=True)
MU_NEXT = sympy.Symbol("mu_t+1", positive=True)


def nadam(*, scheduled_ema: bool = True, nu_in_n_hat: bool = True) -> Spec:
    """Dozat (2016), Algorithm 2 (Nesterov-accelerated adaptive moment estimation)::

        ĝ ← g/(1 − Π_t),  m ← μ_t·m + (1 − μ_t)·g,  m̂ ← m/(1 − Π_{t+1}),
        n ← ν·n + (1 − ν)·g²,  n̂ ← ν·n/(1 − ν^t),
        θ ← θ − α·((1 − μ_t)·ĝ + μ_{t+1}·m̂)/(sqrt(n̂) + ε),     Π_t = μ_1⋯μ_t.

    The paper takes the schedule μ_1, μ_2, … as a hyperparameter; this spec uses torch's
    μ_t = β1·(1 − ½·0.96^(t·ψ)) so that it differs from torch only where the paper does.
    ``scheduled_ema=False`` (the EMA with a constant β1) and ``nu_in_n_hat=False`` (no ν factor)
    are torch's choices; with both, the rule is torch's (``proofs.nadam_dozat_vs_torch``).
    """
    eta, epsilon = lr(2e-3), eps(1e-8)
    beta1, beta2 = betas()
    psi = hyperparameter("momentum_decay", 4e-3, latex="psi")
    product = StateVar("mu_product", sympy.Symbol("Pi", positive=True), sympy.S.One, scalar=True)
    m, n = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, nu, pi = beta1.symbol, beta2.symbol, product.symbol
    ema = MU if scheduled_ema else b1
    n_hat = (nu * n.symbol if nu_in_n_hat else n.symbol) / (1 - nu**t)
    changed = [
        name
        for name, torch_form in (("beta1_ema", not scheduled_ema), ("no_nu", not nu_in_n_hat))
        if torch_form
    ]
    return Spec(
        PREFIX + "NAdam(Dozat 2016)" + (f"[{','.join(changed)}]" if changed else ""),
        (eta, beta1, beta2, epsilon, psi),
        (step_counter(), product, m, n),
        (
            (t, t + 1),
            (MU, momentum_schedule(b1, psi.symbol, t)),
            (MU_NEXT, momentum_schedule(b1, psi.symbol, t + 1)),
            (pi, pi * MU),
            (m.symbol, ema * m.symbol + (1 - ema) * g),
            (n.symbol, nu * n.symbol + (1 - nu) * g**2),
            (
                p,
                p
                - eta.symbol
                * ((1 - MU) * g / (1 - pi) + MU_NEXT * m.symbol / (1 - pi * MU_NEXT))
                / (sympy.sqrt(n_hat) + epsilon.symbol),
            ),
        ),
        notes=(
            "Dozat's Algorithm 2 (μ_t a free schedule in the paper; here torch's"
            " β1(1 − ½·0.96^(tψ)), ψ = 4e-3 = 1/250 as in Keras, which also keeps β1 in m)."
            " torch differs in two places (proofs.nadam_dozat_vs_torch): its first moment is"
            " m ← β1·m + (1 − β1)·g with a constant β1 where the paper's is"
            " m ← μ_t·m + (1 − μ_t)·g (whose weights sum to 1 − Π_t, so m/(1 − Π_t) is"
            " unbiased; torch's sum to 1 − β1^t), and its v̂ = v/(1 − β2^t) lacks the paper's"
            " factor ν (n̂ = ν·n/(1 − ν^t)). With both changed the rule is torch's exactly"
            " (weight_decay = 0, Π_t exact: torch rounds mu_product into float32 unless the"
            " default dtype is float64). Defaults β1 = 0.9, ψ = 4e-3, eps = 0: torch's first"
            " step is 0.806× this one. No weight decay;"
            " constant lr (the paper's α_t is a schedule)"
        ),
    )


RHO = sympy.Symbol("rho_t", real=True)
BIAS2 = sympy.Symbol("c_t", positive=True)


def radam() -> Spec:
    """Liu et al. (2019), Algorithm 2: where ρ_t > 4, θ ← θ − α·r_t·m̂·l_t with
    l_t = sqrt((1 − β2^t)/v) (no eps) and r_t the variance rectification; else θ ← θ − α·m̂.

    c_t = 1 − β2^t is written −expm1(t·log1p(β2 − 1)): the same number, which the float64
    oracle evaluates without the cancellation of 1 − β2^t (a relative error of ~1e-14 at
    β2 = 0.999, t = 5, which ρ_t − 4 ≈ 1 turns into ~1e-11 in r_t).
    ``proofs.radam_threshold_band`` rewrites it back.
    """
    eta = lr(1e-3)
    beta1, beta2 = betas()
    m, v = state("exp_avg", "m"), state("exp_avg_sq", "v")
    b1, b2 = beta1.symbol, beta2.symbol
    rho_inf, _ = radam_rho(b2, t)
    rectification = radam_rectification(rho_inf, RHO)
    m_hat = m.symbol / (1 - b1**t)
    return Spec(
        PREFIX + "RAdam(Liu 2019)",
        (eta, beta1, beta2),
        (step_counter(), m, v),
        (
            (t, t + 1),
            (m.symbol, b1 * m.symbol + (1 - b1) * g),
            (v.symbol, b2 * v.symbol + (1 - b2) * g**2),
            (BIAS2, -expm1(t * log1p(b2 - 1))),
            (RHO, rho_inf - 2 * t * (1 - BIAS2) / BIAS2),
            (
                p,
                sympy.Piecewise(
                    (
                        p - eta.symbol * rectification * m_hat * sympy.sqrt(BIAS2 / v.symbol),
                        RHO > 4,
                    ),
                    (p - eta.symbol * m_hat, True),
                ),
            ),
        ),
        notes=(
            "Liu et al.'s Algorithm 2: rectified where ρ_t > 4, l_t = sqrt((1 − β2^t)/v) with no"
            " eps. torch rectifies where ρ_t > 5 (decided in double; the authors' code,"
            " LiyuanLucasLiu/RAdam, uses ρ_t ≥ 5) and adds eps to sqrt(v):"
            " sqrt(1 − β2^t)/(sqrt(v) + eps), eps/sqrt(1 − β2^t) on the scale of sqrt(v̂)."
            " With eps = 0 both branches are torch's (proofs.radam_threshold_band); the rules"
            " part only at steps with 4 < ρ_t ≤ 5, rectified here and unrectified in torch:"
            " t = 5 alone for β2 ∈ {0.9, 0.99, 0.999, 0.9999}; for 3/5 < β2 ≤ 2/3"
            " (4 < ρ_∞ ≤ 5) every step from the first with ρ_t > 4 on, where torch never"
            " rectifies. No weight decay"
        ),
    )


SIGN_CHANGE = sympy.Symbol("sigma", real=True)
UNDO = sympy.Symbol("u", real=True)


def rprop() -> Spec:
    """Riedmiller & Braun (1993), Rprop with weight-backtracking. Where g·prev > 0 the step
    size grows, Δ ← min(Δ·η+, Δmax), and p ← p − sign(g)·Δ; where g·prev < 0 it shrinks,
    Δ ← max(Δ·η−, Δmin), the previous weight step is reverted, p ← p − Δw_{t−1}, and the stored
    gradient is set to 0; where g·prev = 0, p ← p − sign(g)·Δ with Δ unchanged.

    The previous step needs no state of its own: Δw_{t−1} = −sign(prev)·step_size in every state
    the rule reaches (after a step, prev is that step's g and step_size its Δ; after a revert,
    prev = 0 and nothing can be reverted), which ``proofs.rprop_backtracking`` checks.
    """
    eta = lr(0.1)
    minus, plus = hyperparameter("etaminus", 0.5), hyperparameter("etaplus", 1.2)
    low, high = hyperparameter("step_size_min", 1e-6), hyperparameter("step_size_max", 50.0)
    prev = state("prev", "q")
    size = StateVar("step_size", sympy.Symbol("s", positive=True), eta.symbol)
    q, s = prev.symbol, size.symbol
    flipped = SIGN_CHANGE < 0
    return Spec(
        PREFIX + "Rprop(Riedmiller-Braun 1993)",
        (eta, minus, plus, low, high),
        (step_counter(), prev, size),
        (
            (t, t + 1),
            (SIGN_CHANGE, sympy.sign(g) * sympy.sign(q)),
            (UNDO, sympy.sign(q) * s),  # −Δw_{t−1}, with the step size it was taken with
            (
                s,
                sympy.Piecewise(
                    (sympy.Min(s * plus.symbol, high.symbol), SIGN_CHANGE > 0),
                    (sympy.Max(s * minus.symbol, low.symbol), flipped),
                    (s, True),
                ),
            ),
            (p, sympy.Piecewise((p + UNDO, flipped), (p - sympy.sign(g) * s, True))),
            (q, sympy.Piecewise((0, flipped), (g, True))),
        ),
        notes=(
            "Riedmiller & Braun's Rprop with weight-backtracking: on a sign change of g·prev"
            " the previous weight step is undone (p ← p + sign(prev)·Δ_{t−1}) besides shrinking"
            " Δ and zeroing the stored gradient. torch is iRprop− (Igel & Hüsken 2000): on a"
            " sign change p stays (proofs.rprop_backtracking), so after a flip torch sits at"
            " p_t where the paper is back at p_{t−1}; without sign changes the two agree."
            " The paper clamps one-sidedly (growth at Δmax, shrink at Δmin, Δ kept when"
            " g·prev = 0), torch clamps to [min, max] every step: the same unless lr lies"
            " outside [step_size_min, step_size_max]. The sign is exact here (torch's is of"
            " g·prev rounded into the dtype). Δ0 = lr = 0.1, the paper's (torch 1e-2)"
        ),
    )


def asgd() -> Spec:
    """Polyak & Juditsky (1992): x_t = x_{t−1} − γ_t·∇f(x_{t−1}) and the average of every
    iterate from the start, x̄_t = (1/t)·Σ_{i=0}^{t−1} x_i: ``ax ← ax + (p − ax)/t`` with p the
    iterate *before* the step. Their steps need only decrease more slowly than 1/t; this spec
    takes γ_t = lr·t^(−α) (0 < α < 1 is their example; α = 0, a constant step, is torch's
    λ = 0)."""
    eta = lr(1e-2)
    power = hyperparameter("alpha", 0.75)
    ax = state("ax", "a")
    return Spec(
        PREFIX + "ASGD(Polyak-Juditsky 1992)",
        (eta, power),
        (step_counter(), ax),
        (
            (t, t + 1),
            (ax.symbol, ax.symbol + (p - ax.symbol) / t),
            (p, p - eta.symbol * t ** (-power.symbol) * g),
        ),
        notes=(
            "Polyak–Juditsky: after T steps ax = mean(x_0, …, x_{T−1}), every iterate from the"
            " start x_0 with equal weight (their x̄_T); γ_t = lr·t^(−α). torch averages the"
            " iterate after each step with μ = 1/max(1, t − t0) of the previous step: after T"
            " steps ax = mean(x_{t0+2}, …, x_T) (proofs.asgd_averaging), so even t0 = 0 leaves"
            " out x_0 and x_1 ((T + 1)·x̄_{T+1} − x_0 − x_1 = (T − 1)·ax_T,"
            " proofs.asgd_polyak_juditsky); t0 = −1 (torch does not validate t0) gives"
            " mean(x_1, …, x_T), and no t0 includes x_0. torch's step η_t ="
            " lr/(1 + λ·lr·(t − 1))^α comes with the shrink p ← p(1 − λ·η_t): λ = 0 is"
            " P–J's constant step exactly (same iterates); λ = 1/lr gives γ_t = lr·t^(−α)"
            " but 1 − λ·η_1 = 0 zeroes p in the first step. torch also keeps eta and mu in"
            " float32 (float64 under a float64 default dtype)"
        ),
    )


VARIANTS: dict[str, Spec] = {spec.name: spec for spec in (nadam(), radam(), rprop(), asgd())}
