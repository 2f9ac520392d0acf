"""The spec check's error bounds, derived from each update's op sequence.

Measure. ``conformance.core.ulp.scaled_ulp_error``: the distance of a computed output from the exact
one-step value correctly rounded into the dtype, in units of the dtype's spacing at the scale
``S = max(|exact|, |value before the step|)``. Since ``spacing(S) > u*S`` (``u = 2**-p``, the
unit roundoff), an error ``k*u*|t|`` in a term ``t`` with ``|t| <= c*S`` costs fewer than ``k*c``
ULPs at scale.

Rounding counts (relative errors, in units of ``u``), for the op sequence torch runs (TORCH_NOTES,
"How the kernels round"; impl runs the same kernels), the worse of its for-loop and foreach
paths where they differ:

- every kernel rounds its result once: ``mul``, ``div``, ``add``, and ``add(alpha=s)`` as one
  fma: 1; ``addcmul(b, c, value=s)`` is ``fma(round(s*b), c, a)``: 2 (1 when ``s == 1``);
  ``addcdiv(b, c, value=s)`` is ``a + round(round(s*b)/c)``; ``lerp(e, g, w)`` is
  ``fma(w, g - e, e)``: the difference and the fma;
- ``Tensor.sqrt`` is within 1 ULP of the correctly rounded root (not correctly rounded on this
  CPU): 1/2 + 1 ULP of the result <= 3u relative; it halves its argument's relative error;
- a Python-double hyperparameter is cast into the compute type: 1 (float64: exact, but its own
  double arithmetic rounds; each double op is counted as one rounding of the dtype, which over-
  counts float32 and below by a factor 2**29); ``1 - beta`` is exact in double for beta in
  {0} U [0.5, 1] (Sterbenz), which the spec domain guarantees; ``math.sqrt`` is correctly rounded;
- float16/bfloat16 kernels compute in float32 and round once on store; every op is still counted
  at the dtype's u, because the foreach path stores each intermediate in the dtype;
- a sum of same-sign terms (the spec domain: maximize off, one sign for params, grads and
  momentum-like state) has the largest relative error of its terms plus its own rounding; a
  product or quotient adds its factors' relative errors; a difference that can cancel divides
  them by its condition (RMSprop's centered variance, bounded on the domain).

An output's bound is ``FINAL`` (its own rounding, the exact value's rounding into the dtype, and
1/2 more when the computed value lies one binade above the scale) plus the relative errors of the
terms its last op combines, each times ``|term|/S``:

- a state output ``s'`` is a same-sign sum of terms no larger than itself: ``FINAL + (k - 1)``
  for a count ``k`` that includes its own last rounding;
- the param ``p' = p - q`` is one rounding of the update ``q`` added to ``p``, and
  ``|q| <= |p| + |p'| <= 2*S``: ``FINAL + 2*k_q``. (The factor 2 is reached when a step
  crosses zero; where ``|q|`` is far below ``|p|`` the bound is loose by that ratio.)

These are first-order counts. Each count ``k`` enters as ``gamma_k/u = k/(1 - k*u)`` (Higham,
*Accuracy and Stability of Numerical Algorithms*, Lemma 3.1), which bounds the product of ``k``
factors ``(1 + d_i)``, ``|d_i| <= u``, exactly. Gradual underflow adds absolute errors instead:
the "Underflow terms" below, per element.
"""

from __future__ import annotations

import fractions
import math

import mpmath
import numpy as np
import torch

from conformance.bounds.rounding import gamma, unit_roundoff
from conformance.core.ulp import spacing
from specs.building_blocks import scalar_state_product

FINAL = 1.5


def _state(k: float, dtype) -> float:
    return FINAL + gamma(k - 1, dtype)


def _param(k_update: float, dtype, before_update: float = 0.0) -> float:
    """``p' = p~ - q`` rounded once: ``q`` carries ``k_update`` roundings and ``|q| <= 2*S``;
    ``p~`` (AdamW's decayed param, ``|p~| <= |p|``) carries ``before_update``."""
    return FINAL + gamma(before_update, dtype) + 2 * gamma(k_update, dtype)


def _step(before) -> float:
    """The step count before this step (0 for a fresh state)."""
    return float(before.get("step", 0.0))


def _l2(group, key="weight_decay", complex_param=False) -> int:
    """``d = g + wd*p`` as ``fma(wd, p, g)``: wd's cast and the fma (``d = g`` when wd == 0).
    On a complex param torch's for-loop path forms it before ``view_as_real``, in complex
    arithmetic: ``wd*p`` is a complex product by ``wd + 0i``, whose cross terms ``0*im`` are
    exact, so one rounding per component, and then the add: wd's cast, the product, the add."""
    if not group[key]:
        return 0
    return 3 if complex_param else 2


# -- Rounding counts, one function per update rule: (group, before, dtype) -> ULPs --------------
# ``before``: the step's inputs, "param", "grad" and the starting state ("step" absent: fresh)
def sgd(group, before, dtype, *, complex_param=False) -> dict:
    """``b' = fma(1 - tau, d, round(mu*b))``: mu*b 2 (cast, mul), (1 - tau)*d 1 + k_d (cast; exact
    in double on the domain), the fma 1. Nesterov ``e = fma(mu, b', d)``: 1 + k_b (mu's cast),
    the fma 1. ``p' = fma(-lr, e, p)``: q = lr*e, lr's cast 1 + k_e. A fresh buffer is d (fewer).
    A complex param (``complex_param``) runs every op in complex arithmetic, where
    ``add(x, alpha=s)`` rounds ``s*x`` (a product by ``s + 0i``: one rounding per component)
    before the add: one more rounding in d (``_l2``), in (1 - tau)*d, in mu*b' and in lr*e."""
    k_d = _l2(group, complex_param=complex_param)
    unfused = 1 if complex_param else 0  # add(alpha=s) as round(s*x), then the add
    bounds = {}
    if group["momentum"] == 0:
        k_e = k_d
    else:
        k_b = 1 + max(2, 1 + unfused + k_d)
        bounds["momentum_buffer"] = _state(k_b, dtype)
        k_e = 2 + unfused + k_b if group["nesterov"] else k_b
    bounds["param"] = _param(1 + unfused + k_e, dtype)
    return bounds


def adagrad(group, before, dtype, *, complex_param=False) -> dict:
    """``sum' = fma(d, d, sum)`` (addcmul with value 1): 1 + 2*k_d. ``std = sqrt(sum') + eps``:
    the sqrt k_sum/2 + 3, eps's cast 1, the add 1. ``clr = lr/(1 + (t - 1)*lr_decay)`` in double:
    mul, add (same sign), div and the cast: 4 (lr_decay == 0: the cast only, 1 + 0*x is exact).
    ``q = round(round(clr*d)/std)`` (for-loop addcdiv; foreach scales the grads first, the same
    roundings): k_clr + k_d + 1, + k_std + 1. A complex param: ``_l2``'s complex count."""
    k_d = _l2(group, complex_param=complex_param)
    k_sum = 1 + 2 * k_d
    k_std = 1 + max(k_sum / 2 + 3, 1)
    k_clr = 4 if group["lr_decay"] else 1
    return {
        "sum": _state(k_sum, dtype),
        "param": _param(k_clr + k_d + 1 + k_std + 1, dtype),
    }


def rmsprop(group, before, dtype, *, complex_param=False) -> dict:
    """``sq' = fma(round((1 - a)*d), d, round(a*sq))``: a*sq 2, (1 - a)*d 2 + k_d, times d + k_d,
    the fma 1. Centered: ``ga' = lerp(ga, d, 1 - a)``: the weight's cast, the difference, d, the
    fma: 3 + k_d; ``var = fma(-ga', ga', sq')`` cancels, but on the domain (sq >= 2*ga**2,
    a >= 0.5) sq'/ga'**2 >= 2/(2 - a) >= 4/3, so sq'/var <= 4 and ga'**2/var <= 3: 4*k_sq +
    3*2*k_ga + 1. ``avg = sqrt(.) + eps``: k/2 + 3, + 1. Momentum ``b' = round(mu*b) +
    round(d/avg)``: 1 + max(2, k_d + k_avg + 1); ``q = lr*b'`` (fma) 1 + k_b. Without momentum
    ``q = round(round(lr*d)/avg)``: 2 + k_d + k_avg + 1, the same count. A complex param:
    ``_l2``'s complex count."""
    k_d = _l2(group, complex_param=complex_param)
    k_sq = 1 + max(2, 2 + 2 * k_d)
    bounds = {"square_avg": _state(k_sq, dtype)}
    if group["centered"]:
        k_ga = 3 + k_d
        bounds["grad_avg"] = _state(k_ga, dtype)
        k_root = 4 * k_sq + 3 * 2 * k_ga + 1
    else:
        k_root = k_sq
    k_avg = 1 + max(k_root / 2 + 3, 1)
    k_quotient = k_d + k_avg + 1
    if group["momentum"] > 0:
        k_b = 1 + max(2, k_quotient)
        bounds["momentum_buffer"] = _state(k_b, dtype)
        bounds["param"] = _param(1 + k_b, dtype)
    else:
        bounds["param"] = _param(2 + k_quotient, dtype)
    return bounds


def adam(group, before, dtype, *, decoupled=False, complex_param=False) -> dict:
    """``m' = lerp(m, d, 1 - b1)``: the weight's cast, the difference, the fma, and d (b1 == 0:
    m' = d exactly): 3 + k_d; on the domain |m' - m| <= |m'|. ``v' = fma(round((1 - b2)*d), d,
    round(b2*v))``: 3 + 2*k_d (as RMSprop's sq'); amsgrad's maximum is exact. ``den =
    round(sqrt(v')/c) + eps`` with ``c = math.sqrt(1 - b2**t)`` in double (the subtraction 1/2,
    the sqrt 1, the cast 1): k_v/2 + 3, + 2.5 + 1, + 1 (eps's cast dominated). ``step_size =
    lr/(1 - b1**t)``: 3. ``q = round(round(step_size*m')/den)``: 3 + k_m + 1 + k_den + 1.
    AdamW first ``p~ = round(p*(1 - lr*wd))``: lr*wd, 1 - x (x <= 1/2 on the domain: the
    rounding of x amplified at most once), the cast, the mul: 5, of |p~| <= S. The double pow
    ``b**t`` (<= 1 ULP of double) is amplified by b**t/(1 - b**t) in 1 - b**t: ``_pow_term``.
    A complex param: ``_l2``'s complex count."""
    beta1 = group["betas"][0]
    k_d = 0 if decoupled else _l2(group, complex_param=complex_param)
    k_m = 3 + k_d if beta1 else k_d
    k_v = 3 + 2 * k_d
    k_den = 1 + max(k_v / 2 + 3 + 2.5 + 1, 1)
    k_q = 3 + k_m + 1 + k_den + 1
    decay = 5 if decoupled and group["weight_decay"] else 0
    bounds = {
        "exp_avg": _state(max(k_m, 1), dtype),
        "exp_avg_sq": _state(k_v, dtype),
        "param": _param(k_q, dtype, decay) + _pow_term(group, _step(before), dtype),
    }
    if group["amsgrad"]:
        bounds["max_exp_avg_sq"] = bounds["exp_avg_sq"]
    return bounds


def adamw(group, before, dtype, *, complex_param=False) -> dict:
    return adam(group, before, dtype, decoupled=True, complex_param=complex_param)


def adamax(group, before, dtype, *, complex_param=False) -> dict:
    """``m' = lerp(m, d, 1 - b1)``: 3 + k_d (as Adam's). ``u' = max(round(b2*u), round(|d| +
    eps))``: b2*u 2 (cast, mul); |d| + eps: eps's cast, the add and d, 1 + max(1, k_d); the max
    is exact. ``clr = lr/(1 - b1**t)``: 3. ``q = round(round(clr*m')/u')`` (addcdiv, both
    paths): 3 + k_m + 1, + k_u + 1. ``_pow_term`` for b1**t. A complex param: ``_l2``'s
    complex count."""
    k_d = _l2(group, complex_param=complex_param)
    k_m = 3 + k_d if group["betas"][0] else k_d
    k_u = max(2, 1 + max(1, k_d))
    return {
        "exp_avg": _state(max(k_m, 1), dtype),
        "exp_inf": _state(k_u, dtype),
        "param": _param(5 + k_m + k_u, dtype)
        + _pow_term(group, _step(before), dtype, weights=(2.0, 0)),
    }


def adadelta(group, before, dtype, *, complex_param=False) -> dict:
    """``v' = fma(round((1 - rho)*d), d, round(rho*v))``: 3 + 2*k_d (as RMSprop's sq'; 1 - rho
    exact, rho in {0} U [0.5, 1]). ``std = sqrt(v' + eps)``: eps's cast and the add, 1 +
    max(k_v, 1), halved by the sqrt, + 3. ``sqrt(u + eps)``: 2/2 + 3 = 4. ``delta =
    round(round(num/std)*d)``: 4 + k_std + 1 + k_d + 1. ``u' = fma(round((1 - rho)*delta),
    delta, round(rho*u))``: 3 + 2*k_delta. ``q = lr*delta``: the fma's lr cast 1 + k_delta, and
    one more on the complex for-loop path (round(lr*delta) then a complex add): 2 + k_delta.
    A complex param: ``_l2``'s complex count (the L2 term in complex arithmetic, before
    ``view_as_real``)."""
    k_d = _l2(group, complex_param=complex_param)
    k_v = 3 + 2 * k_d
    k_std = (1 + max(k_v, 1)) / 2 + 3
    k_delta = 4 + k_std + 1 + k_d + 1
    return {
        "square_avg": _state(k_v, dtype),
        "acc_delta": _state(3 + 2 * k_delta, dtype),
        "param": _param(2 + k_delta, dtype),
    }


# -- A complex param vs its view_as_real pair ------------------------------------------------------
def complex_pair(spec_bound, group, before, real_after, dtype) -> dict:
    """Per element, in ULPs at the check's scale ``max(|r|, |ref|)``: how far a complex param's
    one step may lie from the same step on its ``view_as_real`` pair (the ``complex_as_real``
    check), for a rule whose complex path rounds differently (``Entry.complex_ulp`` set).
    ``before``: the step's inputs (as for the rule's counts); ``real_after``: the real pair's
    outputs ``r``, by key.

    Once the two paths part (Adadelta: the L2 term, ``fma(wd, p, g)`` on the real pair,
    ``round(g + round(wd*p))`` in complex arithmetic), every later op rounds at *different*
    operands on each path: their errors are independent, and nothing ties one to the other but
    the exact value ``x`` both approximate. So the bound goes through it: ``|c - r| <= |c - x~|
    + |x~ - r| <= (B_c + B_r) spacing(S_x)``, ``x~`` the exact value rounded, ``B_c`` the rule's
    count for the complex path (``complex_param``), ``B_r`` for the real pair. A count of the
    one op that differs (the former fixed 4 ULP) misses every rounding after it: Adadelta's
    acc_delta with rho = 0 and d**2 >> eps, where d itself hardly matters (acc_delta ~ eps), lay
    2.4 ULP above x on the real pair and 3.6 below on the complex path (regressions.py).
    Splitting instead where the paths part (the rest run from each path's own d) gives the same
    sum: the counts are linear in d's count, ``B(k_c) + B(k_r) = B(k_c + k_r) + B(0)``.

    Scale: the counts hold at ``S_x = max(|x~|, |ref|)``; the check measures at ``max(|r|,
    |ref|)``. ``|x~| <= |r| + B_r spacing(S_x) <= |r| + 2u B_r S_x`` gives ``S_x <= max(|r| /
    (1 - 2u B_r), |ref|)``: the count is scaled by that spacing over the check's (2 where ``r``
    lies just below a power of two and ``x~`` may lie above it, else 1). No absolute terms: the
    check runs on complex64/complex128 (float32/float64 parts) on the spec domain, where no
    intermediate is subnormal (``domains.SPEC_MIN``), so the underflow terms are 0. ``step`` is
    exact."""
    u = unit_roundoff(dtype)
    complex_counts = spec_bound(group, before, dtype, complex_param=True)
    real_counts = spec_bound(group, before, dtype)
    out = {}
    for key, r in real_after.items():
        if key == "step":
            out[key] = 0.0
            continue
        total = complex_counts[key] + real_counts[key]
        ref = before["param"] if key == "param" else before.get(key, 0.0)
        r, ref = np.abs(np.asarray(r, np.float64)), np.abs(np.asarray(ref, np.float64))
        counted = np.maximum(r / (1 - 2 * u * real_counts[key]), ref)
        measured = np.maximum(r, ref)
        ratio = spacing(torch.from_numpy(counted), dtype) / spacing(
            torch.from_numpy(measured), dtype
        )
        out[key] = total * ratio.numpy()
    return out


def rprop(group, before, dtype) -> dict:
    """``s' = clamp(round(s*factor), min, max)``: the factor eta+/eta- is stored in the dtype
    (torch writes it into the sign tensor): 1, the mul 1, the clamp exact; a fresh state's s is
    ``full_like(g, lr)``, lr rounded into the dtype: 1 more. ``p' = fma(-sign(g), s', p)``: the
    sign and the zeroed gradient are exact, so q = s' (k_s). ``prev'`` is g or 0: exact."""
    k_s = 3
    return {"step_size": _state(k_s, dtype), "prev": FINAL, "param": _param(k_s, dtype)}


def _double_error(torch_form, dtype) -> float:
    """The exact relative error of a scalar torch forms in Python doubles, in units of the dtype's
    u. ``torch_form(c, x, sqrt)`` is written once, op for op as torch writes it, and evaluated
    twice: with Python floats (torch's value), and with mpmath at 120 digits (the exact value),
    where ``x`` takes an input at its exact binary value and ``c`` a constant of torch's code
    at the value it means (0.96 is 24/25 there, the double 0.96 in torch's evaluation)."""
    value = torch_form(float, float, math.sqrt)
    with mpmath.workdps(120):
        exact = torch_form(_decimal, mpmath.mpf, mpmath.sqrt)
        if exact == 0:
            return 0.0 if value == 0 else math.inf
        relative = abs((mpmath.mpf(value) - exact) / exact)
    return float(relative) / unit_roundoff(dtype)


def _decimal(constant) -> mpmath.mpf:
    fraction = fractions.Fraction(repr(constant))
    return mpmath.mpf(fraction.numerator) / fraction.denominator


def _momentum(c, x, beta1, psi, n):
    """NAdam's mu_n = beta1*(1 - 0.5*0.96**(n*psi)), as torch writes it."""
    return x(beta1) * (c(1.0) - c(0.5) * (c(0.96) ** (x(n) * x(psi))))


def nadam(group, before, dtype) -> dict:
    """``m'`` and ``v'`` as Adam's (3 + k_d, 3 + 2*k_d); ``mu_product`` is torch's float32 product
    (decided: exact). ``D = sqrt(v'/bc2) + eps`` (for-loop) or ``sqrt(v')/sqrt(bc2) + eps``
    (foreach, the larger count): k_v/2 + 3, + e_sqrt(bc2) + 1 (cast) + 1 (div), + 1 (eps). Two
    ``addcdiv`` steps, ``p1 = p - round(round(a*g)/D)`` then ``p' = p1 - round(round(b*m')/D)``,
    with the double coefficients ``a = lr(1 - mu_t)/(1 - Pi_t)`` and ``b = lr*mu_{t+1}/(1 -
    Pi_t*mu_{t+1})`` (their exact errors e_a, e_b; each cast 1): the terms have one sign, so
    |q1| + |q2| <= 2*S and the larger count times 2 bounds both; p1 lies between p and p', so
    its rounding adds 1. Decoupled: ``p~`` 5 (as AdamW)."""
    beta1, beta2 = group["betas"]
    lr, psi = float(group["lr"]), group["momentum_decay"]
    t = _step(before) + 1
    pi_t = scalar_state_product(
        before.get("mu_product", 1.0), _momentum(float, float, beta1, psi, t)
    )

    def coefficient_a(c, x, _):
        return -x(lr) * (c(1.0) - _momentum(c, x, beta1, psi, t)) / (c(1.0) - x(pi_t))

    def coefficient_b(c, x, _):
        mu_next = _momentum(c, x, beta1, psi, t + 1)
        return (-x(lr) * mu_next) / (c(1.0) - x(pi_t) * mu_next)

    def root(c, x, sqrt):
        return sqrt(c(1.0) - x(beta2) ** x(t))

    e_a, e_b, e_root = (_double_error(f, dtype) for f in (coefficient_a, coefficient_b, root))
    decoupled = group["decoupled_weight_decay"]
    k_d = 0 if decoupled else _l2(group)
    k_m = 3 + k_d if beta1 else k_d
    k_v = 3 + 2 * k_d
    k_den = k_v / 2 + 3 + e_root + 2 + 1
    k_q = max(e_a + 1 + k_d + 1 + k_den + 1, e_b + 1 + k_m + 1 + k_den + 1)
    decay = 5 if decoupled and group["weight_decay"] else 0
    return {
        "mu_product": FINAL,
        "exp_avg": _state(max(k_m, 1), dtype),
        "exp_avg_sq": _state(k_v, dtype),
        "param": _param(k_q, dtype, decay + 1),
    }


def _radam_scalars(group, t: float) -> dict:
    """RAdam's double-precision scalars as ``torch_form``s for ``_double_error``, written as
    torch 2.13 writes them (for-loop ``** 0.5``; foreach ``_dispatch_sqrt``, i.e. math.sqrt)."""
    beta1, beta2 = group["betas"]
    lr = float(group["lr"])

    def bc(c, x, beta):
        return c(1.0) - x(beta) ** x(t)

    def rect_argument(c, x):
        rho_inf = c(2.0) / (c(1.0) - x(beta2)) - c(1.0)
        rho_t = rho_inf - c(2.0) * x(t) * (x(beta2) ** x(t)) / bc(c, x, beta2)
        return (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)

    def step_size(c, x, sqrt):
        return sqrt(bc(c, x, beta2)) * sqrt(rect_argument(c, x)) * x(lr) / bc(c, x, beta1)

    return {
        "bc1": lambda c, x, _: bc(c, x, beta1),
        "bc2_pow": lambda c, x, _: bc(c, x, beta2) ** c(0.5),
        "rect_pow": lambda c, x, _: rect_argument(c, x) ** c(0.5),
        "S": step_size,
        "U": lambda c, x, _: (x(lr) * c(1.0) / bc(c, x, beta1)) * -1,
    }


def radam(group, before, dtype) -> dict:
    """``m'``, ``v'`` as Adam's; ``den = sqrt(v') + eps``: k_v/2 + 3 + 1. The branch is torch's
    (decided). Unrectified, for-loop ``round(round(m'/bc1)*lr)`` (casts and ops 4, + e_bc1) or
    foreach ``fma(U, m', p)`` (U's cast, + e_U). Rectified, for-loop
    ``round(round(round(round(m'/bc1)*lr) * round(c*round(1/den))) * rect)`` with c = bc2**0.5:
    (k_m + e_bc1 + 4) + (k_den + 3 + e_c) + 1 + (e_rect + 2); foreach
    ``fma(round(1/round(den/S)), m', p)`` with S = sqrt(bc2)*rect*lr/bc1: k_den + e_S + 3 + k_m.
    The larger of the two paths. Decoupled: ``p~`` 5. Each e_* is that double scalar's exact
    error (``_double_error``), the cancellation in rho_t included."""
    t = _step(before) + 1
    decoupled = group["decoupled_weight_decay"]
    k_d = 0 if decoupled else _l2(group)
    k_m = 3 + k_d if group["betas"][0] else k_d
    k_v = 3 + 2 * k_d
    k_den = k_v / 2 + 4
    beta2 = group["betas"][1]
    rho_inf = 2 / (1 - beta2) - 1
    if rho_inf - 2 * t * (beta2**t) / (1 - beta2**t) > 5.0:  # torch's decision, in doubles
        e = {k: _double_error(f, dtype) for k, f in _radam_scalars(group, t).items()}
        loop = (k_m + e["bc1"] + 4) + (k_den + 3 + e["bc2_pow"]) + 1 + (e["rect_pow"] + 2)
        foreach = k_den + e["S"] + 3 + k_m
    else:
        scalars = _radam_scalars(group, t)
        e_bc1, e_u = (_double_error(scalars[k], dtype) for k in ("bc1", "U"))
        loop, foreach = k_m + e_bc1 + 4, k_m + e_u + 1
    decay = 5 if decoupled and group["weight_decay"] else 0
    return {
        "exp_avg": _state(max(k_m, 1), dtype),
        "exp_avg_sq": _state(k_v, dtype),
        "param": _param(max(loop, foreach), dtype, decay),
    }


def asgd(group, before, dtype) -> dict:
    """With eta and mu the stored float32 values (exact in every compute type). For-loop:
    ``p~ = round(p*(1 - lambd*eta))``, the double scalar's exact error e_dec, its cast and the
    mul (|p~| <= |p|), then ``p' = fma(-eta, d, p~)``: q = eta*d carries k_d. Foreach:
    ``p' = fma(-round(d + lambd*p), eta, p)``: q carries lambd's cast, the fma and k_d. ``ax' =
    ax + round(round(p' - ax)*mu)`` (for-loop; foreach one fma): the difference's and the
    product's roundings, each of a term <= 2*S_ax: 4; the param's own error enters ax as an
    absolute term (``asgd_absolute``). ``eta'`` in float32: the for-loop rounds a double once;
    foreach computes lr/((1 + lambd*lr*t)**alpha) in float32 tensor ops: lambd*lr (double,
    cast), times t, plus 1 (<= 4 on 1 + x), the pow (alpha times that, + 3), the reciprocal and
    the mul by lr (cast, mul): 4*alpha + 6. ``mu'`` is one double rounded once."""
    eta = float(np.asarray(before.get("eta", scalar_state_product(group["lr"], 1.0))))
    lambd = group["lambd"]
    e_dec = _double_error(lambda c, x, _: c(1.0) - x(lambd) * x(eta), dtype)
    k_d = _l2(group)
    loop = FINAL + gamma(e_dec + 2, dtype) + 2 * gamma(k_d, dtype)
    foreach = _param(2 + k_d, dtype)
    scalar = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    return {
        "param": max(loop, foreach),
        "ax": _state(5, dtype),
        "eta": _state(4 * group["alpha"] + 6, scalar),
        "mu": _state(1, scalar),
    }


def asgd_absolute(group, before, exact, dtype):
    """ax' = ax + mu*(p' - ax) takes the rounded p': the param's whole error, mu times, in value
    units (its bound times the spacing at the param's scale). Underflow: p~ and q rounded (h)."""
    h = _h(dtype)
    mu = float(np.asarray(before.get("mu", 1.0)))
    scale = np.maximum(np.abs(exact["param"]), np.abs(before["param"]))
    spacing_p = spacing(torch.from_numpy(np.asarray(scale, np.float64)), dtype).numpy()
    _, eta_d = _l2_grad(group, before, dtype)
    eta = float(np.asarray(before.get("eta", scalar_state_product(group["lr"], 1.0))))
    param_abs = eta * eta_d + 2 * h
    carried = asgd(group, before, dtype)["param"] * spacing_p + param_abs
    return {"param": param_abs, "ax": mu * carried + 2 * h}


def _pow_term(group, step, dtype, weights=(2.0, 1.0)) -> float:
    """torch forms ``1 - b**t`` in double. pow's error (<= 1 double ULP, 2*u64 relative of b**t)
    is amplified by ``a = b**t/(1 - b**t)`` (cancellation for small t, b near 1): relative
    ``2*u64*a`` of bc1, half of that of sqrt(bc2), into q, then the factor 2 of |q| <= 2*S. In the
    dtype's units that is ``u64/u`` times as much: ``4*a1 + 2*a2`` ULPs in float64, below 2**-27
    of an ULP in float32."""
    t = step + 1
    total = 0.0
    for beta, weight in zip(group["betas"], weights, strict=True):
        if 0 < beta < 1:
            total += 2 * weight * beta**t / (1 - beta**t)
    return total * unit_roundoff(torch.float64) / unit_roundoff(dtype)


# -- Underflow terms ------------------------------------------------------------------------------
# The relative model of "Rounding counts" (each rounding: |error| <= 2**-p * |result|) holds for
# normal results. A result below the normal range is rounded with an *absolute* error of at most
# h = (smallest subnormal)/2 instead (IEEE gradual underflow; fl(x) = x(1 + d) + e, |d| <= 2**-p,
# |e| <= h, d*e = 0). The final rounding of an output is already within 1/2 ULP at scale (the
# scale's spacing never drops below the smallest subnormal), so only the *intermediate* roundings
# count: each contributes h times its amplification into the output. The amplifications come
# from the exact one-step values (``exact``, the spec's outputs) and the inputs (``before``:
# "param", "grad" and the starting state). The terms that matter:
#   - a sum of squares s' that underflows feeds a square root: sqrt(s' + e) - sqrt(s') is at
#     most min(sqrt(|e|), |e|/sqrt(s')), unbounded relative to sqrt(s') as s' -> 0;
#   - a quotient n/D with D >= eps (eps outside the root) amplifies an absolute error of n by
#     1/D, and an absolute error dD of the denominator by |u|/D_lo (u = n/D, D_lo the smallest
#     D the rounded computation can produce, >= eps/2).
# In float32/bfloat16/float64 on the spec domain (tensors and hyperparameters 0 or >= 2**-20)
# no intermediate is below 2**-126, so these terms are tiny multiples of 2**-150 (kept: they are
# the theorem); in float16 (normal from 2**-14, tensors from 2**-5) they are the issue-13
# failures (Adagrad float16 13 > 12 ULP, Adam float16 19 > 16 ULP): (1 - beta2)*g**2, clr*g and
# wd*p land among float16's subnormals.
def _h(dtype) -> float:
    info = torch.finfo(dtype)
    return info.tiny * info.eps / 2  # half the smallest subnormal


def _sqrt_shift(x, e):
    """Bound on |sqrt(x + d) - sqrt(x)| for |d| <= e, x >= 0 exact."""
    x = np.abs(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.minimum(np.sqrt(e), np.where(x > 0, e / np.sqrt(x), np.inf))


def _l2_grad(group, before, dtype, key="weight_decay"):
    """|d| = |g + wd*p| and the absolute underflow error of d (0 when wd == 0: d is g): the
    rounding of d itself (h), plus the cast of the double wd into the compute type (float32
    for float32/float16/bfloat16 tensors), exact for normal wd but off by up to that type's
    half subnormal when wd is below its normal range (wd = 5e-46 casts to 0), times
    |p|."""
    wd = group.get(key, 0.0)
    d = np.abs(before["grad"] + wd * before["param"])
    if not wd:
        return d, 0.0
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    return d, _h(dtype) + np.abs(before["param"]) * _h(compute)


def _quotient_terms(u, n_err, den, den_err, eps, h):
    """Absolute error of u = n/D (rounded): n's error / D, D's error * |u| / D_lo, and the
    quotient's own possible underflow h."""
    den_lo = np.maximum(den - den_err, eps / 2)
    return n_err / den_lo + np.abs(u) * den_err / den_lo + h


def sgd_underflow(group, before, exact, dtype):
    # d = g + wd*p (eta_d <= h); b' = mu*b (h) + (1 - tau)*d (the final rounding of b' is its
    # own; into the param it is one more h); nesterov: g + mu*b' (h); p' = p - lr*direction.
    h = _h(dtype)
    _, eta_d = _l2_grad(group, before, dtype)
    lr, mu = group["lr"], group["momentum"]
    if mu == 0:
        return {"param": lr * eta_d}
    fresh = "momentum_buffer" not in before
    db = eta_d if fresh else h + (1 - group["dampening"]) * eta_d
    direction = eta_d + mu * (db + h) + h if group["nesterov"] else db + h
    return {"param": lr * direction, "momentum_buffer": db}


def adagrad_underflow(group, before, exact, dtype):
    # d (eta_d); s' = s + d*d: d's error 2|d|eta_d, s' rounded (h, it feeds the root);
    # D = sqrt(s') (h) + eps (h); numerator clr*d: d's error times clr, and the foreach path
    # rounds clr*d into the dtype (h); quotient and final add.
    h = _h(dtype)
    d, eta_d = _l2_grad(group, before, dtype)
    t = exact["step"]
    clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
    s1 = exact["sum"]
    ds = 2 * d * eta_d
    den = np.sqrt(s1) + group["eps"]
    den_err = _sqrt_shift(s1, ds + h) + 2 * h
    u = clr * d / den
    return {
        "param": _quotient_terms(u, clr * eta_d + h, den, den_err, group["eps"], h),
        "sum": ds,
    }


def rmsprop_underflow(group, before, exact, dtype):
    # d (eta_d); sq' = alpha*sq (h) + (1 - alpha)*d*d (d's error); centered: ga' = lerp (d's
    # error times 1 - alpha, rounded: h), var = sq' - ga'**2 (h); D = sqrt(var) (h) + eps (h);
    # momentum: b' = mu*b (h) + d/D (quotient terms); p' = p - lr*b' (b' rounded: h).
    h = _h(dtype)
    d, eta_d = _l2_grad(group, before, dtype)
    a, eps = group["alpha"], group["eps"]
    dsq = h + (1 - a) * 2 * d * eta_d
    var, dvar = exact["square_avg"], dsq + h
    out = {"square_avg": dsq}
    if group["centered"]:
        ga = exact["grad_avg"]
        dga = (1 - a) * eta_d
        var = var - ga * ga
        dvar = dvar + 2 * np.abs(ga) * (dga + h) + h
        out["grad_avg"] = dga
    den = np.sqrt(np.maximum(var, 0)) + eps
    den_err = _sqrt_shift(np.maximum(var, 0), dvar) + 2 * h
    if group["momentum"] > 0:
        q = d / den
        db = h + _quotient_terms(q, eta_d, den, den_err, eps, h)
        out["momentum_buffer"] = db
        out["param"] = group["lr"] * (db + h)
    else:
        u = group["lr"] * d / den
        out["param"] = _quotient_terms(u, group["lr"] * eta_d + h, den, den_err, eps, h)
    return out


def adam_underflow(group, before, exact, dtype, decoupled=False):
    # AdamW: p*(1 - lr*wd) rounded (h). Adam: d = g + wd*p (eta_d). m' = lerp (d's error times
    # 1 - beta1; m' rounded: h into the param); v' = beta2*v (h) + (1 - beta2)*d*d (d's error),
    # rounded (h); amsgrad's max is exact. D = sqrt(v')/c (h, h; c = sqrt(1 - beta2**t) <= 1
    # amplifies) + eps (h); p' = p - (lr/bc1) * m'/D (round(s*m') h, quotient terms).
    h = _h(dtype)
    beta1, beta2 = group["betas"]
    if decoupled:
        d, eta_d = np.abs(before["grad"]), 0.0
    else:
        d, eta_d = _l2_grad(group, before, dtype)
    t = exact["step"]
    c = (1 - beta2**t) ** 0.5
    step_size = group["lr"] / (1 - beta1**t)
    m1 = exact["exp_avg"]
    dm = (1 - beta1) * eta_d
    second = exact.get("max_exp_avg_sq", exact["exp_avg_sq"])
    dv = h + (1 - beta2) * 2 * d * eta_d
    den = np.sqrt(second) / c + group["eps"]
    den_err = (_sqrt_shift(second, dv + h) + h) / c + 2 * h
    u = step_size * m1 / den
    param = _quotient_terms(u, step_size * (dm + h) + h, den, den_err, group["eps"], h)
    out = {"param": param + (h if decoupled and group["weight_decay"] else 0.0)}
    out.update(exp_avg=dm, exp_avg_sq=dv)
    if "max_exp_avg_sq" in exact:
        out["max_exp_avg_sq"] = dv
    return out


def adamax_underflow(group, before, exact, dtype):
    # m' = lerp (d's error times 1 - beta1; rounded: h into the param); u' = max(beta2*u (h),
    # |d| + eps (d's error)) >= eps; p' = p - clr*m'/u' (round(clr*m') h, quotient terms).
    h = _h(dtype)
    beta1, _ = group["betas"]
    _, eta_d = _l2_grad(group, before, dtype)
    clr = group["lr"] / (1 - beta1 ** exact["step"])
    dm, du = (1 - beta1) * eta_d, eta_d + h
    u = clr * exact["exp_avg"] / exact["exp_inf"]
    param = _quotient_terms(u, clr * (dm + h) + h, exact["exp_inf"], du + h, group["eps"], h)
    return {"param": param, "exp_avg": dm, "exp_inf": du}


def adadelta_underflow(group, before, exact, dtype):
    # v' (d's error, h); std = sqrt(v' + eps) >= sqrt(eps); delta = sqrt(u + eps)/std * d
    # (std's error, d's error, the quotient's and product's h); u' = rho*u (h) +
    # (1 - rho)*delta**2 (delta's error); p' = p - lr*delta (delta rounded: h).
    h = _h(dtype)
    rho, eps = group["rho"], group["eps"]
    d, eta_d = _l2_grad(group, before, dtype)
    dv = (1 - rho) * 2 * d * eta_d
    std = np.sqrt(exact["square_avg"] + eps)
    dstd = _sqrt_shift(exact["square_avg"] + eps, dv + 2 * h) + h
    num = np.sqrt(np.asarray(before.get("acc_delta", 0.0)) + eps)
    std_lo = np.maximum(std - dstd, np.sqrt(eps) / 2)
    ratio = num / std
    delta = ratio * d
    ddelta = np.abs(delta) * dstd / std_lo + ratio * eta_d + (h / std_lo) * d + 2 * h
    du = h + (1 - rho) * 2 * np.abs(delta) * (ddelta + h)
    return {"square_avg": dv, "acc_delta": du, "param": group["lr"] * (ddelta + h)}


def rprop_underflow(group, before, exact, dtype):
    # q = s' itself; s' = s*factor rounded (a subnormal s' is its own final rounding, but an
    # intermediate of the param): h
    return {"param": _h(dtype)}


def _moments_underflow(group, before, exact, dtype):
    """d's error; m' = lerp (d's error times 1 - beta1); v' = beta2*v (h) + (1 - beta2)*d*d."""
    h = _h(dtype)
    beta1, beta2 = group["betas"]
    if group.get("decoupled_weight_decay"):
        d, eta_d = np.abs(before["grad"]), 0.0
    else:
        d, eta_d = _l2_grad(group, before, dtype)
    return d, eta_d, (1 - beta1) * eta_d, h + (1 - beta2) * 2 * d * eta_d


def nadam_underflow(group, before, exact, dtype):
    # D = sqrt(v'/bc2) + eps (v' rounded: h; the quotient and the root: h each); two quotients
    # a*d/D and b*m'/D (their numerators rounded: h) and p1's own rounding (h)
    h = _h(dtype)
    beta1, beta2 = group["betas"]
    d, eta_d, dm, dv = _moments_underflow(group, before, exact, dtype)
    t, psi, lr = exact["step"], group["momentum_decay"], float(group["lr"])
    pi_t = float(exact["mu_product"])
    mu, mu_next = (beta1 * (1 - 0.5 * 0.96 ** (n * psi)) for n in (t, t + 1))
    a, b = lr * (1 - mu) / (1 - pi_t), lr * mu_next / (1 - pi_t * mu_next)
    bc2, eps = 1 - beta2**t, group["eps"]
    den = np.sqrt(exact["exp_avg_sq"] / bc2) + eps
    den_err = _sqrt_shift(exact["exp_avg_sq"] / bc2, (dv + 2 * h) / bc2) + 2 * h
    param = (
        _quotient_terms(a * d / den, a * eta_d + h, den, den_err, eps, h)
        + _quotient_terms(b * exact["exp_avg"] / den, b * (dm + h) + h, den, den_err, eps, h)
        + h
        + (h if group["decoupled_weight_decay"] and group["weight_decay"] else 0.0)
    )
    return {"param": param, "exp_avg": dm, "exp_avg_sq": dv}


# the absolute terms' key for the elements where torch's own op order leaves the automatic
# bound's model (an intermediate overflows): the torch-order bound judges torch and impl there
BEYOND_AUTOMATIC = "beyond automatic"


def radam_underflow(group, before, exact, dtype):
    # unrectified: q = (lr/bc1)*m' (m' rounded: h; two products: h each); rectified: times
    # rect*sqrt(bc2)/(sqrt(v') + eps), the quotient terms, and the foreach path's overflow
    h = _h(dtype)
    beta1, beta2 = group["betas"]
    _, _, dm, dv = _moments_underflow(group, before, exact, dtype)
    t, lr, eps = exact["step"], float(group["lr"]), group["eps"]
    scale = lr / (1 - beta1**t)
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * (beta2**t) / (1 - beta2**t)
    if rho_t > 5.0:
        rect = (
            (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
        ) ** 0.5
        factor = scale * rect * (1 - beta2**t) ** 0.5
        den = np.sqrt(exact["exp_avg_sq"]) + eps
        den_err = _sqrt_shift(exact["exp_avg_sq"], dv + h) + 2 * h
        q = factor * exact["exp_avg"] / den
        param = _quotient_terms(q, factor * (dm + h) + 3 * h, den, den_err, eps, h)
        # torch's foreach path forms round(den/S) in the dtype: beyond its range that is inf,
        # 1/inf is 0, and the whole step q is lost (float16: S < den/65504, e.g. lr = 1e-4
        # just past the rectification threshold, where rect is small)
        info = torch.finfo(dtype)
        with np.errstate(divide="ignore", over="ignore"):
            overflows = (den + den_err) * (1 + info.eps) / factor > info.max
        param = param + np.where(overflows, np.abs(q), 0.0)
    else:
        param, overflows = scale * (dm + h) + 2 * h, False
    if group["decoupled_weight_decay"] and group["weight_decay"]:
        param = param + h
    return {
        "param": param,
        "exp_avg": dm,
        "exp_avg_sq": dv,
        BEYOND_AUTOMATIC: {"param": overflows},
    }


def adamw_underflow(group, before, exact, dtype):
    return adam_underflow(group, before, exact, dtype, decoupled=True)


# -- SparseAdam: rounding counts and the absolute terms of its sub-then-add moments ---------------
def _sparse_adam_counts(group) -> tuple[int, int]:
    """Roundings of the moment updates ``U = round(round(g - m)*c1)`` (the difference, and for
    0 < beta1 the cast of c1 = 1 - beta1 and the product) and ``V = round(round(round(g*g) -
    v)*c2)`` (likewise, without the square's own rounding, which is counted apart)."""
    return tuple(3 if 0 < beta < 1 else 1 for beta in group["betas"])


def sparse_adam(group, before, dtype) -> dict:
    """torch's SparseAdam on a named element (``impl.sparse_adam``): ``m' = round(m + U)`` and
    ``v' = round(v + V)``, the difference-then-add form (not a lerp or fma). On the domain (one
    sign; beta in {0} U [0.5, 1)) ``|c1*(g - m)| <= S`` (c1*g <= m', c1*m <= m) and
    ``c2*g**2 <= v'``: ``m'`` carries k_U, ``v'`` k_V and the square's 1, plus their own
    rounding. The param: ``q = round(s*round(m'/den))`` with ``den = round(sqrt(v')) + eps``
    (the root 3, eps's cast and the add: 5 relative to den), ``s = lr*sqrt(1 - b2**t)/(1 -
    b1**t)`` in double and cast (5.5), the quotient and the product: 12.5, plus ``_pow_term``.
    The errors of m' and v' enter q as absolute terms (``sparse_adam_absolute``): with beta1 = 0,
    m' = m + (g - m) loses u*|m| of a g that may be far smaller than m."""
    k_u, k_v = _sparse_adam_counts(group)
    return {
        "exp_avg": _state(k_u + 1, dtype),
        "exp_avg_sq": _state(k_v + 2, dtype),
        "param": _param(12.5, dtype) + _pow_term(group, _step(before), dtype),
    }


def sparse_adam_absolute(group, before, exact, dtype):
    """Per element: the absolute errors of m' and v' (their roundings, as in ``sparse_adam``,
    and each intermediate's possible underflow h) carried into ``q = s*m'/den`` by
    ``_quotient_terms``; the moments' own intermediate underflows."""
    h, u = _h(dtype), unit_roundoff(dtype)
    beta1, beta2 = group["betas"]
    k_u, k_v = _sparse_adam_counts(group)
    g, t = np.abs(before["grad"]), exact["step"]
    m, v = (np.abs(before.get(key, 0.0)) for key in ("exp_avg", "exp_avg_sq"))
    m1, v1 = np.abs(exact["exp_avg"]), np.abs(exact["exp_avg_sq"])
    dm = gamma(k_u, dtype) * u * (1 - beta1) * np.abs(g - m) + 2 * h
    dv = (1 - beta2) * (u * g * g + gamma(k_v, dtype) * u * np.abs(g * g - v)) + 3 * h
    step_size = float(group["lr"]) * math.sqrt(1 - beta2**t) / (1 - beta1**t)
    eps = group["eps"]
    den = np.sqrt(v1) + eps
    den_err = _sqrt_shift(v1, dv + u * v1 + h) + 2 * h
    q = step_size * m1 / den
    param = _quotient_terms(q, step_size * (dm + u * m1 + h) + h, den, den_err, eps, h)
    return {"param": param + h, "exp_avg": dm, "exp_avg_sq": dv}
