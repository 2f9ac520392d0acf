"""The one table that drives the harness: one ``Entry`` per optimizer.

Test ids, parametrization and report rows all come from ``REGISTRY``. Adding an optimizer means
one impl module, one spec module and one entry here.

ULP bounds (``spec_ulp``) are in the "ULPs at scale" measure of ``conformance.ulp``: the error of
a one-step result against the exact result correctly rounded once into the dtype, in units of
the dtype's spacing at ``max(|exact|, |value before the step|)``. The analysis beside each entry
counts roundings: each correctly rounded op contributes at most 1/2 ULP of its own result,
``Tensor.sqrt`` up to 1 ULP (not correctly rounded on this CPU, TORCH_NOTES), Python-double
scalars (``lr/bc1``, ``1 - beta``) are cast into the kernel's compute type (float32 for
f32/f16/bf16 tensors: one more relative rounding each), and the final ``p + (-u)`` adds 1/2 ULP.
Errors of intermediate terms are relative to those terms, and every term is bounded by a small
multiple of the scale (``|u| <= |p| + |p'|``), so the bounds are small integers; the slack
factor of about 2 covers the factor between a term's binade and the scale's.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis import strategies as st

from conformance.case import DTYPES

REAL_DTYPES = ("float16", "bfloat16", "float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128")
DEVICES = ("cpu", "cuda")


def _impl_module():
    return importlib.import_module("impl")


# -- hyperparameter domains (mirroring the specs' Hyper domains, narrowed where noted) -----------
# purpose "torch" (parity and invariants): the whole domain torch accepts, minus fp16 underflow.
# purpose "spec"/"spec_trajectory": the well-conditioned domain of the one-step bounds:
#   - decay rates beta in {0} U [0.5, 1): torch forms 1 - beta in double, exact there (Sterbenz),
#     while for 0 < beta < 0.5 its rounding is amplified by m/m' in lerp (seen: 606 ULP at
#     beta1 = 1e-4);
#   - maximize off and one sign for params, grads and momentum-like state (strategies), so no
#     sum in the update cancels; maximize is checked bitwise by its own invariant;
#   - spec_trajectory: no weight decay (a param that changes sign would cancel g + wd*p);
#   - hyperparameters that may be small (weight decay, lr decay, initial accumulator) are 0 or
#     in [SPEC_MIN, hi], like the tensors (strategies: [2**-20, 2**20]). The relative rounding
#     model holds for normal numbers only: a double below float32's normal range is cast into
#     the float32 compute type with an *absolute* error of up to half its smallest subnormal
#     (2**-150), i.e. a relative error up to 100% (issue 13: weight_decay = 2**-149 made
#     g = wd*p round to 2**-148 instead of 1.5 * 2**-149, and 5e-46 cast to 0; then g/avg with
#     avg ~ eps amplified that to 1e7 ULPs of momentum_buffer). With both factors >= 2**-20 every
#     product the updates form is >= 2**-100 (analysis beside REGISTRY), normal in float32,
#     bfloat16 and float64; float16's remaining underflows are the absolute terms of
#     ``spec_underflow``.
SPEC_MIN = 2.0**-20


def _small(purpose, hi, default=0.0):
    """0 (or ``default``) or a value in [lo, hi]; lo = SPEC_MIN for the spec purposes."""
    lo = SPEC_MIN if purpose.startswith("spec") else 0.0
    return st.one_of(st.just(default), st.just(0.0), st.floats(lo, hi))


def _lr():
    return st.floats(1e-4, 1.0)


def _eps(dtype: torch.dtype):
    # float16: eps below ~6e-5 is subnormal and 1e-8 underflows to 0, after which a zero second
    # moment divides by zero (torch's own fp16 tests use eps=0.1). Other dtypes: torch's range.
    if dtype == torch.float16:
        return st.floats(1e-3, 1.0)
    return st.one_of(st.just(1e-8), st.floats(1e-12, 1e-1))


def _weight_decay(purpose, default=0.0):
    if purpose == "spec_trajectory":
        return st.just(0.0)
    return _small(purpose, 0.5, default)


def _rate(purpose, hi=0.99, typical=None):
    """A decay rate / momentum in [0, hi] (spec purposes: {0} U [0.5, hi])."""
    lo = 0.5 if purpose.startswith("spec") else 0.0
    options = [st.just(0.0), st.floats(lo, hi)]
    if typical is not None:
        options.insert(0, st.just(typical))
    return st.one_of(options)


def _maximize(purpose):
    return st.just(False) if purpose.startswith("spec") else st.booleans()


@st.composite
def sgd_hyper(draw, dtype, purpose, *, nesterov=False):
    momentum = draw(
        st.floats(0.5 if purpose.startswith("spec") else 0.01, 0.99) if nesterov else _rate(purpose)
    )
    return {
        "lr": draw(_lr()),
        "momentum": momentum,
        "dampening": 0.0 if nesterov or momentum == 0 else draw(_rate(purpose, 1.0)),
        "weight_decay": draw(_weight_decay(purpose)),
        "nesterov": nesterov,
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def adam_hyper(draw, dtype, purpose, *, decoupled=False):
    return {
        "lr": draw(_lr()),
        "betas": (draw(_rate(purpose, 0.99, 0.9)), draw(_rate(purpose, 0.9999, 0.999))),
        "eps": draw(_eps(dtype)),
        "weight_decay": draw(_weight_decay(purpose, 1e-2 if decoupled else 0.0)),
        "amsgrad": draw(st.booleans()),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def adagrad_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "lr_decay": draw(_small(purpose, 0.5)),
        "weight_decay": draw(_weight_decay(purpose)),
        "initial_accumulator_value": draw(_small(purpose, 1.0)),
        "eps": draw(st.floats(1e-3, 1.0) if dtype == torch.float16 else st.floats(1e-12, 1e-1)),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def rmsprop_hyper(draw, dtype, purpose):
    return {
        "lr": draw(st.floats(1e-4, 0.1)),
        # vs spec, alpha = 0 makes centered sq - grad_avg**2 exactly 0 (torch: rounding noise)
        "alpha": draw(
            st.floats(0.5, 0.9999) if purpose.startswith("spec") else _rate(purpose, 0.9999, 0.99)
        ),
        "eps": draw(_eps(dtype)),
        "weight_decay": draw(_weight_decay(purpose)),
        "momentum": draw(_rate(purpose)),
        "centered": draw(st.booleans()),
        "maximize": draw(_maximize(purpose)),
    }


# -- state layouts (torch's keys; kinds are explained in strategies.starting_state) ------------
def sgd_state(group):
    return {"momentum_buffer": "any"} if group["momentum"] != 0 else {}


def adam_state(group):
    fields = {"step": "step", "exp_avg": "any", "exp_avg_sq": "nonneg"}
    if group["amsgrad"]:
        fields["max_exp_avg_sq"] = ("ge", "exp_avg_sq")
    return fields


def adagrad_state(group):
    return {"step": "step", "sum": "nonneg"}


def rmsprop_state(group):
    fields = {"step": "step"}
    if group["centered"]:
        fields["grad_avg"] = "any"
        fields["square_avg"] = ("ge_square", "grad_avg")
    else:
        fields["square_avg"] = "nonneg"
    if group["momentum"] > 0:
        fields["momentum_buffer"] = "any"
    return fields


@dataclass(frozen=True)
class Entry:
    name: str  # test id and report label
    torch_name: str  # class name in impl and torch.optim; the spec is specs.for_group(torch_name)
    hyperparameters: Callable  # (dtype, purpose) -> strategy of one param group's hyperparameters
    state_fields: Callable  # group -> {state key: kind}, in dependency order
    spec_ulp: dict  # dtype -> (param bound, state bound) vs the exact one-step result
    trajectory_ulp: float  # float64 multi-step vs spec.step_float64 iterated (ULPs at scale)
    eager_state: bool = False  # state exists from __init__ (Adagrad)
    dtypes: tuple = REAL_DTYPES + COMPLEX_DTYPES
    devices: tuple = DEVICES
    torch_ulp: dict = field(default_factory=dict)  # dtype -> bound vs torch.optim (absent: 0)
    complex_ulp: int = 0  # complex param vs its view_as_real pair (>0: checked one step at a time)
    maximize_ulp: dict = field(default_factory=dict)  # dtype -> bound (absent: bitwise)
    # (group, dtype, foreach) -> True where maximize rounds lr into the dtype and minimizing
    # does not; the invariant then minimizes -g at that rounded lr (see adagrad_maximize_rounds_lr)
    maximize_rounds_lr: Callable = lambda group, dtype, foreach: False
    # extra one-step ULPs that depend on the inputs: (group, step before, dtype) -> ULPs
    spec_slack: Callable = lambda group, step, dtype: 0.0
    # absolute one-step allowances from gradual underflow: (group, before, exact, dtype) ->
    # {output key: per-element bound in value units}; see "Underflow terms" below
    spec_underflow: Callable = lambda group, before, exact, dtype: {}
    invariants: tuple = ("maximize", "state_dict_roundtrip", "grad_untouched", "deterministic")
    divergences: tuple = ()  # documented, known differences (of torch, or of the spec dialect)

    @property
    def impl(self):
        """impl's class for this entry (the default subject; see conformance.subject)."""
        return getattr(_impl_module(), self.torch_name)

    @property
    def reference(self):
        return getattr(torch.optim, self.torch_name)


def _adam_bias_correction_slack(group, step, dtype) -> float:
    """torch forms 1 - beta**t in double: pow's rounding (<= 1 double ULP of beta**t) is
    amplified by beta**t / (1 - beta**t) (cancellation for small t, beta near 1). Relative to a
    float64 result that is that many ULPs (bc1 fully, bc2 halved by the sqrt); for float32 and
    below it is < 2**-29 of an ULP, i.e. nothing."""
    if dtype != torch.float64:
        return 0.0
    t = step + 1
    beta1, beta2 = group["betas"]
    amplification = 0.0
    for beta, weight in ((beta1, 1.0), (beta2, 0.5)):
        if 0 < beta < 1:
            amplification += weight * beta**t / (1 - beta**t)
    return 2 * amplification  # "<= 1 ULP" of pow, and the ULP-at-scale factor of 2


# -- Underflow terms ------------------------------------------------------------------------------
# The relative model above (each rounding: |error| <= 2**-p * |result|) holds for normal results.
# A result below the normal range is rounded with an *absolute* error of at most
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
    half subnormal when wd is below its normal range (issue 13: wd = 5e-46 cast to 0), times
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


def adagrad_maximize_rounds_lr(group, dtype, foreach) -> bool:
    """torch's foreach Adagrad (impl mirrors it): with maximize or weight_decay != 0 it scales
    the gradient copy in place, ``_foreach_mul_(grads, -clr)``, and the in-place foreach kernel
    rounds a Python scalar into the tensor's dtype before multiplying; otherwise it calls the
    out-of-place ``_foreach_mul``, which keeps the scalar in float32 (measured: in place is
    round(x * round_dtype(s)), out of place round(x * round_f32(s))). So with
    weight_decay == 0 in float16/bfloat16 the two sides use different scalars, unless -clr is
    representable in the dtype. Every other rounding is the same on both sides (negation is
    exact; ``sum`` sees g*g either way)."""
    if not foreach or dtype not in (torch.float16, torch.bfloat16) or group["weight_decay"] != 0:
        return False
    lr = float(group["lr"])
    return (
        float(torch.tensor(lr, dtype=torch.float64).to(dtype))
        != float(torch.tensor(lr, dtype=torch.float64).float())
        or group.get("lr_decay", 0) != 0
    )


_TORCH_FOREACH_NESTEROV = (
    "torch.optim.SGD(foreach=True, nesterov=True) writes g + momentum*buf into p.grad "
    "(_foreach_add_ on the grads); impl leaves p.grad untouched. Parity is on params and state "
    "only; the grad_untouched invariant applies to impl."
)
_COMPLEX_ARITHMETIC = (
    "{}: the complex path uses complex arithmetic ({}) where the real pair uses fused real ops; "
    "torch does the same, so parity with torch stays bitwise. complex_as_real is checked one "
    "step at a time within {} ULP."
)

# Bounds: (param, state) in ULPs at scale; each counted rounding is <= 1 ULP at scale (a relative
# error of 2**-p on a value below 2**p spacings), squares double a term's count, a sqrt halves
# its argument's and adds 2 (Tensor.sqrt: up to 1 ULP beyond correct rounding), Python-double
# scalars cast into a float32 compute type add 1 where used.
REGISTRY: tuple[Entry, ...] = (
    # SGD: d = g + wd*p (fma: 1); b' = mu*b (cast + mul: 2) + (1-tau)*d (cast + fma: 2) -> b' 3;
    # p' = p - lr*b' (lr cast 1, fma 1) -> param 4 (+1 for |lr*b'| <= 2 * scale) = 5... measured
    # max 1; declared (5, 4).
    Entry(
        "SGD",
        "SGD",
        sgd_hyper,
        sgd_state,
        spec_ulp={d: (5, 4) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=sgd_underflow,
        trajectory_ulp=64,
        complex_ulp=8,
        divergences=(
            _TORCH_FOREACH_NESTEROV,
            _COMPLEX_ARITHMETIC.format("SGD", "p.add_(b, alpha=-lr) on complex tensors", 8),
        ),
    ),
    # SGD nesterov: as SGD, plus d + mu*b' (cast + fma: 2) -> (6, 4).
    Entry(
        "SGD-nesterov",
        "SGD",
        lambda dtype, purpose: sgd_hyper(dtype, purpose, nesterov=True),
        sgd_state,
        spec_ulp={d: (6, 4) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=sgd_underflow,
        trajectory_ulp=64,
        complex_ulp=8,
        invariants=(
            "maximize",
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "nesterov_lookahead",
        ),
        divergences=(
            _TORCH_FOREACH_NESTEROV,
            _COMPLEX_ARITHMETIC.format("SGD", "p.add_(b, alpha=-lr) on complex tensors", 8),
        ),
    ),
    # Adagrad: d (1); sum' = sum + d*d (d squared: 2, addcmul: 1) -> state 3; clr in double,
    # cast (1); std = sqrt(sum') (1.5 + 2) + eps (1) -> 4.5; u = round(clr*d)/std (1+1+1, /: 1)
    # -> 8.5; final 1 -> 9.5, x ~1.25 for |u| vs scale -> (12, 3).
    Entry(
        "Adagrad",
        "Adagrad",
        adagrad_hyper,
        adagrad_state,
        spec_ulp={d: (12, 3) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=adagrad_underflow,
        trajectory_ulp=256,
        eager_state=True,
        complex_ulp=4,
        maximize_rounds_lr=adagrad_maximize_rounds_lr,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adagrad", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
            "torch's foreach Adagrad in float16/bfloat16 with weight_decay == 0: maximize=True "
            "on g is not minimizing -g. maximize takes the in-place _foreach_mul_(grads, -clr), "
            "which rounds the scalar -clr into the dtype first; minimizing takes the "
            "out-of-place _foreach_mul, which keeps it in float32. No ULP bound follows (the "
            "param p + q can cancel: 707 ULP in float16, 30024 in bfloat16 over 3 steps on "
            "torch.optim.Adagrad itself); instead maximize on g is bitwise minimize on -g at "
            "lr = round_dtype(lr) when lr_decay == 0 (107/107 cases), and bitwise as it is when "
            "weight_decay != 0 (both sides in place: 207/207) or on the for-loop path (400/400). "
            "impl mirrors torch bit for bit.",
        ),
    ),
    # RMSprop: d (1); sq' = alpha*sq (2) + (1-alpha)*d*d (cast 1, d^2 2, addcmul 1) -> 4;
    # centered: ga' = lerp (3), sq' - ga'^2 (ga'^2: 6, addcmul 1), condition number <= 4 on the
    # spec domain (sq >= 2*ga^2, alpha >= 0.5) -> x4; sqrt (/2, +2), + eps (1); momentum
    # b' = mu*b (2) + d/avg (addcdiv 2); p' = p - lr*b' (2) -> 16 (centered dominated by the
    # sqrt of a x4-conditioned difference) -> (16, 4).
    Entry(
        "RMSprop",
        "RMSprop",
        rmsprop_hyper,
        rmsprop_state,
        spec_ulp={d: (16, 4) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=rmsprop_underflow,
        trajectory_ulp=1024,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "RMSprop", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
        ),
    ),
    # Adam: d (1); m' = lerp (weight cast 1, g - m 1, fma 1, d 1) -> 4; v' = b2*v (2) +
    # (1-b2)*d*d (d^2 2, cast 1, round(s*d) 1, fma 1) -> 5 -> state 6 with slack; denom =
    # sqrt(v') (2.5 + 2) / sqrt(bc2) (cast 1, div 1) + eps (1) -> 7.5; u = round(step_size*m')
    # (cast 1, 1, m' 4) / denom (7.5 + 1) -> 14.5; final 1 -> 15.5 -> (16, 6), plus the
    # float64-only bias-correction term of _adam_bias_correction_slack.
    Entry(
        "Adam",
        "Adam",
        adam_hyper,
        adam_state,
        spec_ulp={d: (16, 6) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=adam_underflow,
        trajectory_ulp=1024,
        spec_slack=_adam_bias_correction_slack,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adam", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
        ),
    ),
    # AdamW: Adam without the L2 term, plus p*(1 - lr*wd) first (cast 1, mul 1) -> (18, 6).
    Entry(
        "AdamW",
        "AdamW",
        lambda dtype, purpose: adam_hyper(dtype, purpose, decoupled=True),
        adam_state,
        spec_ulp={d: (18, 6) for d in REAL_DTYPES + COMPLEX_DTYPES},
        spec_underflow=lambda *a: adam_underflow(*a, decoupled=True),
        trajectory_ulp=1024,
        spec_slack=_adam_bias_correction_slack,
    ),
)

BY_NAME = {e.name: e for e in REGISTRY}

# Which dtypes each check runs on (the rest of the matrix comes from the entries).
CHECK_DTYPES = {
    "torch": REAL_DTYPES + COMPLEX_DTYPES,
    "spec": REAL_DTYPES + COMPLEX_DTYPES,
    "spec_trajectory": ("float64",),
    "complex_as_real": COMPLEX_DTYPES,
    "nesterov_lookahead": ("float64",),
}
CHECK_DTYPES.update(
    {
        k: REAL_DTYPES
        for k in (
            "maximize",
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "errors",
        )
    }
)
CHECK_DTYPES["memory_safety"] = REAL_DTYPES + COMPLEX_DTYPES


@dataclass(frozen=True)
class Target:
    """One row of the matrix: a check of one subject (optimizer + the entry it claims) in one
    dtype on one device."""

    subject: object  # conformance.subject.Subject
    dtype: str
    device: str

    @property
    def entry(self) -> Entry:
        return self.subject.entry

    @property
    def id(self) -> str:
        return f"{self.subject.id}{self.entry.name}-{self.dtype}-{self.device}"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def applies(entry: Entry, check: str) -> bool:
    if check in ("torch", "spec", "spec_trajectory", "errors", "memory_safety"):
        return True
    if check == "complex_as_real":
        return any(d in COMPLEX_DTYPES for d in entry.dtypes)
    return check in entry.invariants


def targets(check: str, subjects, devices=("cpu",), dtypes=None) -> list[Target]:
    return [
        Target(subject, dtype, device)
        for device in devices
        for subject in subjects
        if applies(subject.entry, check) and device in subject.entry.devices
        for dtype in CHECK_DTYPES[check]
        if dtype in subject.entry.dtypes and (dtypes is None or dtype in dtypes)
    ]
