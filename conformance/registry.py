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
#   - spec_trajectory: no weight decay (a param that changes sign would cancel g + wd*p).
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
    return st.one_of(st.just(default), st.floats(0.0, 0.5))


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
        "lr_decay": draw(st.one_of(st.just(0.0), st.floats(0.0, 0.5))),
        "weight_decay": draw(_weight_decay(purpose)),
        "initial_accumulator_value": draw(st.one_of(st.just(0.0), st.floats(0.0, 1.0))),
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
    # extra one-step ULPs that depend on the inputs: (group, step before, dtype) -> ULPs
    spec_slack: Callable = lambda group, step, dtype: 0.0
    invariants: tuple = ("maximize", "state_dict_roundtrip", "grad_untouched", "deterministic")
    divergences: tuple = ()  # documented, known differences (of torch, or of the spec dialect)

    impl_override: type | None = None  # meta-tests swap in a deliberately broken class

    @property
    def impl(self):
        return self.impl_override or getattr(_impl_module(), self.torch_name)

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
        trajectory_ulp=256,
        eager_state=True,
        complex_ulp=4,
        maximize_ulp={"float16": 1, "bfloat16": 1},
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adagrad", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
            "torch's foreach Adagrad in float16/bfloat16: maximize=True on g is up to 1 ULP from "
            "minimizing -g (measured on torch.optim.Adagrad itself: 45 of 200 random cases); impl "
            "mirrors it, so the maximize invariant allows 1 ULP there.",
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
        for k in ("maximize", "state_dict_roundtrip", "grad_untouched", "deterministic")
    }
)


@dataclass(frozen=True)
class Target:
    """One row of the matrix: a check of one entry in one dtype on one device."""

    entry: Entry
    dtype: str
    device: str

    @property
    def id(self) -> str:
        return f"{self.entry.name}-{self.dtype}-{self.device}"

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def applies(entry: Entry, check: str) -> bool:
    if check in ("torch", "spec", "spec_trajectory"):
        return True
    if check == "complex_as_real":
        return any(d in COMPLEX_DTYPES for d in entry.dtypes)
    return check in entry.invariants


def targets(check: str, devices=("cpu",)) -> list[Target]:
    return [
        Target(entry, dtype, device)
        for device in devices
        for entry in REGISTRY
        if applies(entry, check) and device in entry.devices
        for dtype in CHECK_DTYPES[check]
        if dtype in entry.dtypes
    ]
