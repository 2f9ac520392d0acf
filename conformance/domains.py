"""The Hypothesis domains of every algorithm: one param group's hyperparameters per purpose
(``Purpose``), and the starting state's layout (torch's state keys, each with the kind of value
``strategies.starting_state`` draws for it).

Domains mirror the specs' ``Hyper`` domains, narrowed where noted.
"""

from __future__ import annotations

import inspect

import torch
from hypothesis import strategies as st

from conformance.core.case import Purpose

# -- hyperparameter domains (mirroring the specs' Hyper domains, narrowed where noted) -----------
# Purpose.TORCH (parity and invariants): the whole domain torch accepts, minus fp16 underflow.
# Purpose.SPEC/SPEC_TRAJECTORY: the well-conditioned domain of the one-step bounds:
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
#     (2**-150), i.e. a relative error up to 100% (regressions.py: weight_decay = 2**-149 made
#     g = wd*p round to 2**-148 instead of 1.5 * 2**-149, and 5e-46 cast to 0; then g/avg with
#     avg ~ eps amplified that to 1e7 ULPs of momentum_buffer). With both factors >= 2**-20 every
#     product the updates form is >= 2**-100 (conformance.bounds), normal in float32,
#     bfloat16 and float64; float16's remaining underflows are the absolute terms of
#     ``spec_underflow``.
SPEC_MIN = 2.0**-20


def _small(purpose, hi, default=0.0):
    """0 (or ``default``) or a value in [lo, hi]; lo = SPEC_MIN for the spec purposes."""
    lo = SPEC_MIN if purpose.against_spec else 0.0
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
    if purpose is Purpose.SPEC_TRAJECTORY:
        return st.just(0.0)
    return _small(purpose, 0.5, default)


def _rate(purpose, hi=0.99, typical=None):
    """A decay rate / momentum in [0, hi] (spec purposes: {0} U [0.5, hi])."""
    lo = 0.5 if purpose.against_spec else 0.0
    options = [st.just(0.0), st.floats(lo, hi)]
    if typical is not None:
        options.insert(0, st.just(typical))
    return st.one_of(options)


def _maximize(purpose):
    return st.just(False) if purpose.against_spec else st.booleans()


@st.composite
def sgd_hyper(draw, dtype, purpose, *, nesterov=False):
    momentum = draw(
        st.floats(0.5 if purpose.against_spec else 0.01, 0.99) if nesterov else _rate(purpose)
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
            st.floats(0.5, 0.9999) if purpose.against_spec else _rate(purpose, 0.9999, 0.99)
        ),
        "eps": draw(_eps(dtype)),
        "weight_decay": draw(_weight_decay(purpose)),
        "momentum": draw(_rate(purpose)),
        "centered": draw(st.booleans()),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def adamax_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "betas": (draw(_rate(purpose, 0.99, 0.9)), draw(_rate(purpose, 0.9999, 0.999))),
        "eps": draw(_eps(dtype)),
        "weight_decay": draw(_weight_decay(purpose)),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def nadam_hyper(draw, dtype, purpose):
    return {
        **draw(adamax_hyper(dtype, purpose)),
        "momentum_decay": draw(_small(purpose, 0.5, 4e-3)),
        "decoupled_weight_decay": draw(st.booleans()),
    }


@st.composite
def radam_hyper(draw, dtype, purpose):
    return {**draw(adamax_hyper(dtype, purpose)), "decoupled_weight_decay": draw(st.booleans())}


@st.composite
def adadelta_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "rho": draw(_rate(purpose, 1.0, 0.9)),
        "eps": draw(st.floats(1e-3, 1.0) if dtype == torch.float16 else _eps(dtype)),
        "weight_decay": draw(_weight_decay(purpose)),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def asgd_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "lambd": draw(_small(purpose, 0.5, 1e-4)),
        "alpha": draw(st.one_of(st.just(0.75), st.floats(0.0, 2.0))),
        # the default 1e6 never averages; small t0 starts the averaging within the steps drawn
        "t0": draw(st.one_of(st.just(1e6), st.floats(0.0, 10.0))),
        "weight_decay": draw(_weight_decay(purpose)),
        "maximize": draw(_maximize(purpose)),
    }


@st.composite
def rprop_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "etas": (draw(st.floats(0.1, 0.9)), draw(st.floats(1.1, 3.0))),
        "step_sizes": (draw(_small(purpose, 1e-3, 1e-6)), draw(st.floats(1.0, 100.0))),
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


def adamax_state(group):
    return {"step": "step", "exp_avg": "any", "exp_inf": "nonneg"}


def nadam_state(group):
    # mu_product = mu_1...mu_t with mu_k <= beta1 < 1: any value in (0, 1]
    return {
        "step": "step",
        "mu_product": ("scalar", 2.0**-10, 1.0),
        "exp_avg": "any",
        "exp_avg_sq": "nonneg",
    }


def radam_state(group):
    return {"step": "step", "exp_avg": "any", "exp_avg_sq": "nonneg"}


def adadelta_state(group):
    return {"step": "step", "square_avg": "nonneg", "acc_delta": "nonneg"}


def asgd_state(group):
    # eta = lr/(1 + lambd*lr*t)**alpha <= lr, mu = 1/max(1, t - t0) in (0, 1]
    return {
        "step": "step",
        "eta": ("scalar", 2.0**-20, 1.0),
        "mu": ("scalar", 2.0**-10, 1.0),
        "ax": "any",
    }


def sparse_adam_state(group):
    return {"step": "int_step", "exp_avg": "any", "exp_avg_sq": "nonneg"}


@st.composite
def sparse_adam_hyper(draw, dtype, purpose):
    return {
        "lr": draw(_lr()),
        "betas": (draw(_rate(purpose, 0.99, 0.9)), draw(_rate(purpose, 0.9999, 0.999))),
        "eps": draw(_eps(dtype)),
        "maximize": draw(_maximize(purpose)),
    }


def rprop_state(group):
    return {"step": "step", "prev": "any", "step_size": "nonneg"}


@st.composite
def adafactor_hyper(draw, dtype, purpose):
    # vs spec: eps1² must be a normal number of the dtype. torch clamps V at eps1*eps1 cast into
    # the dtype; below its smallest normal that is 0 (eps1 = 1e-30 in float32), and a zero
    # gradient element becomes rsqrt(0) * 0 = NaN where the statement says 0
    # (docs/torch-findings.md#finding-16)
    lo = 2 * torch.finfo(dtype).tiny ** 0.5 if purpose.against_spec else 1e-30
    eps1 = draw(st.one_of(st.none(), st.floats(lo, max(lo, 1e-3))))
    return {
        "lr": draw(st.one_of(st.just(1e-2), _lr())),
        # w_t = t**beta2_decay; 0 keeps no memory (w_t = 1)
        "beta2_decay": draw(st.one_of(st.just(-0.8), st.floats(-1.0, 0.0))),
        "eps": (eps1, draw(st.one_of(st.just(1e-3), st.floats(0.0, 0.1)))),
        "d": draw(st.one_of(st.just(1.0), st.floats(1.0, 10.0))),
        "weight_decay": draw(_weight_decay(purpose)),
        "maximize": draw(_maximize(purpose)),
    }


def adafactor_state(group):
    return {"step": "step", "row_var": "nonneg", "col_var": "nonneg", "variance": "nonneg"}


def adafactor_state_shape(key: str, shape: tuple) -> tuple | None:
    """torch keeps row and column factors for >= 2-d params (the last dim, resp. the one
    before it, reduced to 1) and a full ``variance`` below that; None: the key is absent."""
    factored = len(shape) >= 2
    if key == "row_var":
        return (*shape[:-1], 1) if factored else None
    if key == "col_var":
        return (*shape[:-2], 1, shape[-1]) if factored else None
    if key == "variance":
        return None if factored else shape
    return shape


DEFAULT_NS = inspect.signature(torch.optim.Muon).parameters["ns_coefficients"].default


@st.composite
def muon_hyper(draw, dtype, purpose):
    # singular_values: 1 or 2 Newton-Schulz steps; the a-priori bfloat16 bound of 3 or more
    # exceeds the singular values' own range (structured_bounds.muon_singular_values)
    steps = st.integers(1, 2) if purpose is Purpose.SINGULAR_VALUES else st.integers(1, 6)
    coefficients = st.one_of(
        st.just(DEFAULT_NS),
        # near the defaults, as users tune them (far off, p diverges: p(1) > 1)
        st.tuples(st.floats(3.0, 3.6), st.floats(-5.0, -4.5), st.floats(1.8, 2.2)),
    )
    return {
        "lr": draw(_lr()),
        "weight_decay": draw(_small(purpose, 0.5, 0.1)),
        "momentum": draw(_rate(purpose, 0.99, 0.95)),
        "nesterov": draw(st.booleans()),
        "ns_coefficients": draw(coefficients),
        "eps": draw(st.one_of(st.just(1e-7), st.floats(1e-12, 1e-3))),
        "ns_steps": draw(
            steps if purpose is Purpose.SINGULAR_VALUES else st.one_of(st.just(5), steps)
        ),
        "adjust_lr_fn": draw(st.sampled_from([None, "original", "match_rms_adamw"])),
    }


def muon_state(group):
    return {"momentum_buffer": "any"}


@st.composite
def lbfgs_hyper(draw, dtype, purpose):
    group = draw(_lbfgs_group())
    if group["max_eval"] is None:
        group["max_eval"] = group["max_iter"] * 5 // 4
    return group


@st.composite
def _lbfgs_group(draw):
    return {
        "lr": draw(st.one_of(st.just(1.0), st.floats(0.1, 1.0))),
        "max_iter": draw(st.one_of(st.just(20), st.integers(1, 8))),
        # None as the constructor resolves it (a group's own None is never resolved: max_eval
        # - n in the line search then raises a TypeError, in torch as in impl)
        "max_eval": draw(st.one_of(st.just(None), st.integers(1, 12))),
        "tolerance_grad": draw(st.one_of(st.just(1e-7), st.floats(1e-9, 1e-3))),
        "tolerance_change": draw(st.one_of(st.just(1e-9), st.floats(0.0, 1e-3))),
        "history_size": draw(st.one_of(st.just(100), st.integers(1, 6))),
        "line_search_fn": draw(st.sampled_from([None, "strong_wolfe"])),
    }


def lbfgs_state(group):
    return {}  # every run starts fresh: the history is built by the steps themselves
