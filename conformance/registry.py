"""The one table that drives the harness: one ``Entry`` per optimizer.

Test ids, parametrization and report rows all come from ``REGISTRY``. Adding an optimizer means
one impl module, one spec module and one entry here.

The spec check's bounds are derived in ``conformance.bounds`` from each update's op sequence:
relative rounding counts per output (``Entry.spec_bound``) plus absolute underflow terms per
element (``Entry.spec_underflow``). A bound is never set from a measurement.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from conformance import bounds, distributed
from conformance.case import DTYPES

REAL_DTYPES = ("float16", "bfloat16", "float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128")
DEVICES = ("cpu", "cuda")
# the distributed check's only device, and the only check on it: a gloo mesh of CPU ranks
GLOO = distributed.DEVICE


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
#     product the updates form is >= 2**-100 (conformance.bounds), normal in float32,
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
    # gradient element becomes rsqrt(0) * 0 = NaN where the statement says 0 (README, findings)
    lo = 2 * torch.finfo(dtype).tiny ** 0.5 if purpose.startswith("spec") else 1e-30
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


DEFAULT_NS = (3.4445, -4.7750, 2.0315)


@st.composite
def muon_hyper(draw, dtype, purpose):
    # singular_values: 1 or 2 Newton-Schulz steps; the a-priori bfloat16 bound of 3 or more
    # exceeds the singular values' own range (structured_bounds.muon_singular_values)
    steps = st.integers(1, 2) if purpose == "singular_values" else st.integers(1, 6)
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
        "ns_steps": draw(steps if purpose == "singular_values" else st.one_of(st.just(5), steps)),
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


@dataclass(frozen=True)
class Entry:
    name: str  # test id and report label
    torch_name: str  # class name in impl and torch.optim; the spec is specs.for_group(torch_name)
    hyperparameters: Callable  # (dtype, purpose) -> strategy of one param group's hyperparameters
    state_fields: Callable  # group -> {state key: kind}, in dependency order
    # (group, inputs before the step, real dtype) -> {"param": ULPs at scale, state key: ULPs}
    # vs the exact one-step result (conformance.bounds: derived counts); None: spec refused
    spec_bound: Callable | None = None
    # nesterov_lookahead only: how far impl's float64 iterates may drift from the look-ahead
    # iteration's over several steps (ULPs at scale). Not derived: two float64 iterations of a
    # nonlinear map drift apart at the rate of its Jacobian, which no one-step count bounds; the
    # one-step equivalence is the symbolic proof (specs.proofs) plus the spec checks' bounds.
    trajectory_ulp: float | None = None
    eager_state: bool = False  # state exists from __init__ (Adagrad)
    dtypes: tuple = REAL_DTYPES + COMPLEX_DTYPES
    devices: tuple = DEVICES
    torch_ulp: dict = field(default_factory=dict)  # dtype -> bound vs torch.optim (absent: 0)
    complex_ulp: int = 0  # complex param vs its view_as_real pair (>0: checked one step at a time)
    maximize_ulp: dict = field(default_factory=dict)  # dtype -> bound (absent: bitwise)
    # torch's for-loop and foreach paths compute differently in float32/float64 too (NAdam,
    # RAdam, ASGD; Adamax with a tensor lr): the torch check pairs each path with its own
    paths_differ: bool = False
    # (group, dtype, foreach) -> True where maximize rounds lr into the dtype and minimizing
    # does not; the invariant then minimizes -g at that rounded lr (see adagrad_maximize_rounds_lr)
    maximize_rounds_lr: Callable = lambda group, dtype, foreach: False
    # absolute one-step allowances: (group, before, exact, dtype) -> {output key: per-element
    # bound in value units}: gradual underflow (bounds, "Underflow terms"), and an output's
    # error carried into another (ASGD's ax averages the rounded param)
    spec_underflow: Callable = lambda group, before, exact, dtype: {}
    invariants: tuple = ("maximize", "state_dict_roundtrip", "grad_untouched", "deterministic")
    divergences: tuple = ()  # documented, known differences (of torch, or of the spec dialect)
    # "check" or "check:dtype" -> why it does not run there; a skip row with the reason
    refused: dict = field(default_factory=dict)
    # sparse COO gradients: "never" (torch raises; only dense drawn), "maybe" (drawn per param)
    # or "always" (SparseAdam: dense ones raise). ``sparse_accepted(group, dtype)``: whether
    # torch takes them there; elsewhere only the torch check (error parity) draws them
    sparse_grads: str = "never"
    sparse_accepted: Callable = lambda group, dtype: True
    # the update is a per-element rule (the SymPy spec checks apply); False: reductions or
    # matrix products, checked by their own kinds (in ``invariants``)
    elementwise: bool = True
    param_dims: tuple = (0, 4)  # (fewest, most) dims of a drawn param (Muon: 2-d only)
    empty_params: bool = True  # torch's Adafactor cannot step an empty param (ZeroDivisionError)
    max_groups: int = 2  # LBFGS takes one param group
    # (state key, param shape) -> the state tensor's shape, or None where torch keeps no such key
    state_shape: Callable = lambda key, shape: shape
    # steps call a closure over a drawn strictly convex quadratic (LBFGS), not drawn gradients
    objective: bool = False
    # distributed: a float32/float64 run on DTensor shards equals the unsharded run bit for bit
    # (an elementwise update sees the same values whatever the shard). False: reductions across
    # shards are summed in another order (reported, not judged)
    sharded_exact: bool = True
    # distributed: what the subject on DTensors is compared with where torch.optim runs there,
    # "torch" (on the same layout, shard by shard) or "unsharded" (a subject that gathers what
    # a reduction needs, Adafactor, is bitwise equal to the unsharded run instead)
    dtensor_reference: str = "torch"

    @property
    def impl(self):
        """impl's class for this entry (the default subject; see conformance.subject)."""
        return getattr(_impl_module(), self.torch_name)

    @property
    def reference(self):
        return getattr(torch.optim, self.torch_name)


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


def sgd_takes_sparse(group, dtype) -> bool:
    """torch's SGD on sparse gradients: weight decay is add(sparse, dense), which raises; in
    float16 a sparse momentum buffer's second step is a sparse + sparse add, which raises
    NotImplementedError ("cadd_sparse" not implemented for 'Half')."""
    return group["weight_decay"] == 0 and not (group["momentum"] and dtype == torch.float16)


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

# torch.optim.Optimizer.load_state_dict casts every floating state tensor but ``step`` to a
# real param's dtype, NAdam's mu_product and ASGD's eta and mu included: a float16/bfloat16 run
# resumed from a checkpoint goes on with those 0-d states rounded to the half type, a float64
# run computes them in float64 from then on; either way apart from the uninterrupted run. impl
# keeps torch's load_state_dict (a drop-in loads what torch loads).
_SCALAR_STATE_ROUNDTRIP = {
    f"state_dict_roundtrip:{dtype}": (
        "torch's load_state_dict casts the 0-d float32 states to the param's dtype, so a "
        "resumed run differs from the uninterrupted one (README, audit findings)"
    )
    for dtype in ("float16", "bfloat16", "float64")
}

REGISTRY: tuple[Entry, ...] = (
    Entry(
        "SGD",
        "SGD",
        sgd_hyper,
        sgd_state,
        spec_bound=bounds.sgd,
        spec_underflow=bounds.sgd_underflow,
        complex_ulp=8,
        sparse_grads="maybe",
        sparse_accepted=sgd_takes_sparse,
        divergences=(
            _TORCH_FOREACH_NESTEROV,
            _COMPLEX_ARITHMETIC.format("SGD", "p.add_(b, alpha=-lr) on complex tensors", 8),
        ),
    ),
    Entry(
        "SGD-nesterov",
        "SGD",
        lambda dtype, purpose: sgd_hyper(dtype, purpose, nesterov=True),
        sgd_state,
        spec_bound=bounds.sgd,
        spec_underflow=bounds.sgd_underflow,
        trajectory_ulp=64,
        complex_ulp=8,
        # torch's grad.add(buf) is add(sparse, dense) once a dense buffer exists: it raises
        sparse_grads="maybe",
        sparse_accepted=lambda group, dtype: False,
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
    Entry(
        "Adagrad",
        "Adagrad",
        adagrad_hyper,
        adagrad_state,
        spec_bound=bounds.adagrad,
        spec_underflow=bounds.adagrad_underflow,
        eager_state=True,
        sparse_grads="maybe",
        sparse_accepted=lambda group, dtype: group["weight_decay"] == 0,
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
    Entry(
        "RMSprop",
        "RMSprop",
        rmsprop_hyper,
        rmsprop_state,
        spec_bound=bounds.rmsprop,
        spec_underflow=bounds.rmsprop_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "RMSprop", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
        ),
    ),
    Entry(
        "Adam",
        "Adam",
        adam_hyper,
        adam_state,
        spec_bound=bounds.adam,
        spec_underflow=bounds.adam_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adam", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
        ),
    ),
    Entry(
        "AdamW",
        "AdamW",
        lambda dtype, purpose: adam_hyper(dtype, purpose, decoupled=True),
        adam_state,
        spec_bound=bounds.adamw,
        spec_underflow=bounds.adamw_underflow,
    ),
    Entry(
        "Adamax",
        "Adamax",
        adamax_hyper,
        adamax_state,
        paths_differ=True,
        spec_bound=bounds.adamax,
        spec_underflow=bounds.adamax_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adamax", "the L2 term grad.add(param, alpha=wd) before view_as_real", 4
            ),
        ),
    ),
    Entry(
        "NAdam",
        "NAdam",
        nadam_hyper,
        nadam_state,
        paths_differ=True,
        spec_bound=bounds.nadam,
        spec_underflow=bounds.nadam_underflow,
        refused=_SCALAR_STATE_ROUNDTRIP,
    ),
    Entry(
        "RAdam",
        "RAdam",
        radam_hyper,
        radam_state,
        paths_differ=True,
        spec_bound=bounds.radam,
        spec_underflow=bounds.radam_underflow,
    ),
    Entry(
        "Adadelta",
        "Adadelta",
        adadelta_hyper,
        adadelta_state,
        spec_bound=bounds.adadelta,
        spec_underflow=bounds.adadelta_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adadelta",
                "the L2 term before view_as_real and, on the for-loop path, p.add_(delta, "
                "alpha=-lr) on the complex param",
                4,
            ),
        ),
    ),
    Entry(
        "ASGD",
        "ASGD",
        asgd_hyper,
        asgd_state,
        paths_differ=True,
        spec_bound=bounds.asgd,
        spec_underflow=bounds.asgd_absolute,
        refused=_SCALAR_STATE_ROUNDTRIP,
    ),
    Entry(
        "Rprop",
        "Rprop",
        rprop_hyper,
        rprop_state,
        spec_bound=bounds.rprop,
        spec_underflow=bounds.rprop_underflow,
    ),
    Entry(
        "SparseAdam",
        "SparseAdam",
        sparse_adam_hyper,
        sparse_adam_state,
        spec_bound=bounds.sparse_adam,
        spec_underflow=bounds.sparse_adam_absolute,
        # complex params: the subject probe skips those rows with torch's own refusal
        # ("SparseAdam does not support complex parameters")
        sparse_grads="always",
        refused={
            "distributed": (
                "SparseAdam takes sparse COO gradients only, and DTensor has no sparse layout "
                "(fully_shard and DCP shard dense tensors)"
            )
        },
        invariants=(
            "maximize",
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "sparse_rows",
        ),
        divergences=(
            "SparseAdam takes sparse gradients only: every case draws COO gradients (repeated "
            "indices included), and a dense one is torch's RuntimeError, which the errors "
            "check compares.",
        ),
    ),
    Entry(
        "Adafactor",
        "Adafactor",
        adafactor_hyper,
        adafactor_state,
        elementwise=False,
        dtypes=REAL_DTYPES,
        empty_params=False,
        state_shape=adafactor_state_shape,
        # impl gathers each DTensor param (README, Beyond one machine): torch.optim refuses 2-d
        # shards and reduces the RMS across shards elsewhere, in another order than unsharded
        dtensor_reference="unsharded",
        # the for-loop path adds alpha*update in one kernel, foreach rounds alpha*update first
        paths_differ=True,
        invariants=(
            "maximize",
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "factored_moments",
        ),
        divergences=(
            "Not elementwise: the row and column factors are means over rows and columns, and "
            "the step is relative to the param's RMS and clipped by the update's RMS. Checked "
            "by factored_moments (relative error vs the SymPy statement, bound n*u per "
            "reduction) instead of the per-element spec checks.",
            "eps1 with eps1² below the dtype's smallest normal (eps1 = 1e-30 in "
            "float32) makes a zero gradient element NaN: the clamp at "
            "eps1*eps1 is 0 in the dtype and rsqrt(0) * 0 = NaN. The spec domain draws eps1 "
            "above that; the torch check draws it anywhere (README, audit findings).",
            "eps1=None is resolved once per step for the whole group: torch's for-loop path "
            "takes the dtype of the first param with a gradient, its foreach path the first "
            "(device, dtype) bucket in hash order (float64 before float32). impl mirrors both "
            "(README, audit findings).",
        ),
    ),
    Entry(
        "Muon",
        "Muon",
        muon_hyper,
        muon_state,
        elementwise=False,
        dtypes=REAL_DTYPES,
        param_dims=(2, 2),
        empty_params=False,  # an A x 0 param: torch's A / B in the lr ratio divides by zero
        # impl gathers each DTensor param (README, Beyond one machine): torch.optim's
        # Newton-Schulz on Shard(0) DTensors sums partial products across ranks (its sharded run
        # differs from its unsharded one) or refuses an in-place add_
        dtensor_reference="unsharded",
        refused={
            "scale_invariance:bfloat16": (
                "torch 2.13 normalises a bfloat16 momentum buffer in place without Nesterov "
                "(grad.bfloat16() is the buffer itself, then div_), so the next step's "
                "momentum mixes a scaled gradient into an unscaled buffer; impl mirrors it "
                "(README, audit findings)"
            ),
        },
        invariants=(
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "singular_values",
            "scale_invariance",
        ),
        divergences=(
            "Newton-Schulz runs in bfloat16 whatever the param dtype: checked by "
            "singular_values (|p^(k)| of the normalised momentum's singular values, bound "
            "derived for bfloat16 GEMMs, 1-2 steps) and scale_invariance (bitwise).",
        ),
    ),
    Entry(
        "LBFGS",
        "LBFGS",
        lbfgs_hyper,
        lbfgs_state,
        elementwise=False,
        dtypes=("float32", "float64"),
        param_dims=(0, 2),
        empty_params=False,  # every param empty: torch's flat_grad.abs().max() raises
        max_groups=1,
        objective=True,
        # impl gathers the flat gradient (README, Beyond one machine): torch.optim cannot
        # flatten uneven shards, and sums its dot products across ranks on even ones
        dtensor_reference="unsharded",
        invariants=(
            "state_dict_roundtrip",
            "grad_untouched",
            "deterministic",
            "two_loop",
            "wolfe",
            "convergence",
        ),
        divergences=(
            "Steps call a closure over a drawn strictly convex quadratic; the torch check "
            "compares params and state after every step() (every closure call included, since "
            "the state holds func_evals and the history).",
        ),
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
CHECK_DTYPES["sparse_rows"] = REAL_DTYPES
CHECK_DTYPES["distributed"] = REAL_DTYPES + COMPLEX_DTYPES
CHECK_DTYPES.update(
    {
        "factored_moments": REAL_DTYPES,
        "singular_values": REAL_DTYPES,
        "scale_invariance": REAL_DTYPES,
        "two_loop": ("float32", "float64"),
        "wolfe": ("float32", "float64"),
        "convergence": ("float32", "float64"),
    }
)


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
    if check in ("spec", "spec_trajectory"):
        return entry.elementwise
    if check in ("torch", "errors", "memory_safety", "distributed"):
        return True
    if check == "complex_as_real":
        return any(d in COMPLEX_DTYPES for d in entry.dtypes)
    return check in entry.invariants


def targets(check: str, subjects, devices=("cpu",), dtypes=None) -> list[Target]:
    return [
        Target(subject, dtype, device)
        for device in devices
        for subject in subjects
        if applies(subject.entry, check)
        # the gloo mesh runs the distributed check and nothing else; it runs nowhere else
        and (device == GLOO) == (check == "distributed")
        and (device in subject.entry.devices or device == GLOO)
        for dtype in CHECK_DTYPES[check]
        if dtype in subject.entry.dtypes and (dtypes is None or dtype in dtypes)
    ]
