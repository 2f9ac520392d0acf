"""The one table that drives the harness: one ``Entry`` per optimizer.

Test ids, parametrization and report rows all come from ``REGISTRY`` (with the check kinds of
``conformance.checks``). An entry names the optimizer's domains (``conformance.domains``), its
derived bounds, dtypes, invariants, refusals and divergences; docs/adding-an-optimizer.md lists
every other file a new optimizer touches.

The spec check's bounds are derived in ``conformance.bounds`` from each update's op sequence:
relative rounding counts per output (``Entry.spec_bound``) plus absolute underflow terms per
element (``Entry.spec_underflow``). A bound is never set from a measurement.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from conformance import domains
from conformance.bounds import torch_order as bounds
from conformance.core.case import DTYPES

REAL_DTYPES = ("float16", "bfloat16", "float32", "float64")
COMPLEX_DTYPES = ("complex64", "complex128")
DEVICES = ("cpu", "cuda")


def _impl_module():
    return importlib.import_module("impl")


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
    # nonzero: the complex path rounds differently from its view_as_real pair, so complex_as_real
    # judges one step at a time within torch_order.complex_pair's derived bound (not this number)
    complex_ulp: int = 0
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
    # "check", "check:dtype" or "dtype" -> why it does not run there; a skip row with the reason
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
    # the step takes GradScaler's ``grad_scale``/``found_inf`` (set by conformance.subject for a
    # fused path): the spec checks draw them (``strategies.cases``)
    grad_scaling: bool = False
    # torch's class documents betas as 0-d tensors too (its for-loop path and capturable one;
    # its plain foreach path refuses them): the torch and spec checks draw them
    # (``strategies.cases``), which is the only way to reach a tensor beta's own branch
    tensor_betas: bool = False

    @property
    def impl(self):
        """impl's class for this entry (the default subject; see conformance.subject)."""
        return getattr(_impl_module(), self.torch_name)

    @property
    def reference(self):
        return getattr(torch.optim, self.torch_name)

    def refusal(self, check: str, dtype: str) -> str | None:
        """Why the registry does not run ``check`` in ``dtype`` for this entry, or None."""
        refused = self.refused
        return refused.get(check) or refused.get(f"{check}:{dtype}") or refused.get(dtype)


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
    "step at a time within the bound derived from both paths' rounding counts "
    "(torch_order.complex_pair)."
)

# torch.optim.Optimizer.load_state_dict casts every floating state tensor but ``step`` to a
# real param's dtype, NAdam's mu_product and ASGD's eta and mu included: a float16/bfloat16 run
# resumed from a checkpoint goes on with those 0-d states rounded to the half type, a float64
# run computes them in float64 from then on; either way apart from the uninterrupted run. impl
# keeps torch's load_state_dict (a drop-in loads what torch loads).
_SCALAR_STATE_ROUNDTRIP = {
    f"state_dict_roundtrip:{dtype}": (
        "torch's load_state_dict casts the 0-d float32 states to the param's dtype, so a "
        "resumed run differs from the uninterrupted one (docs/torch-findings.md#finding-8)"
    )
    for dtype in ("float16", "bfloat16", "float64")
}

REGISTRY: tuple[Entry, ...] = (
    Entry(
        "SGD",
        "SGD",
        domains.sgd_hyper,
        domains.sgd_state,
        spec_bound=bounds.sgd,
        spec_underflow=bounds.sgd_underflow,
        complex_ulp=8,
        sparse_grads="maybe",
        sparse_accepted=sgd_takes_sparse,
        divergences=(
            _TORCH_FOREACH_NESTEROV,
            _COMPLEX_ARITHMETIC.format("SGD", "p.add_(b, alpha=-lr) on complex tensors"),
        ),
    ),
    Entry(
        "SGD-nesterov",
        "SGD",
        lambda dtype, purpose: domains.sgd_hyper(dtype, purpose, nesterov=True),
        domains.sgd_state,
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
            _COMPLEX_ARITHMETIC.format("SGD", "p.add_(b, alpha=-lr) on complex tensors"),
        ),
    ),
    Entry(
        "Adagrad",
        "Adagrad",
        domains.adagrad_hyper,
        domains.adagrad_state,
        spec_bound=bounds.adagrad,
        spec_underflow=bounds.adagrad_underflow,
        eager_state=True,
        sparse_grads="maybe",
        sparse_accepted=lambda group, dtype: group["weight_decay"] == 0,
        complex_ulp=4,
        maximize_rounds_lr=adagrad_maximize_rounds_lr,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adagrad", "the L2 term grad.add(param, alpha=wd) before view_as_real"
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
        domains.rmsprop_hyper,
        domains.rmsprop_state,
        spec_bound=bounds.rmsprop,
        spec_underflow=bounds.rmsprop_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "RMSprop", "the L2 term grad.add(param, alpha=wd) before view_as_real"
            ),
        ),
    ),
    Entry(
        "Adam",
        "Adam",
        domains.adam_hyper,
        domains.adam_state,
        spec_bound=bounds.adam,
        spec_underflow=bounds.adam_underflow,
        tensor_betas=True,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adam", "the L2 term grad.add(param, alpha=wd) before view_as_real"
            ),
        ),
    ),
    Entry(
        "AdamW",
        "AdamW",
        lambda dtype, purpose: domains.adam_hyper(dtype, purpose, decoupled=True),
        domains.adam_state,
        spec_bound=bounds.adamw,
        spec_underflow=bounds.adamw_underflow,
        tensor_betas=True,
    ),
    Entry(
        "Adamax",
        "Adamax",
        domains.adamax_hyper,
        domains.adamax_state,
        paths_differ=True,
        spec_bound=bounds.adamax,
        spec_underflow=bounds.adamax_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adamax", "the L2 term grad.add(param, alpha=wd) before view_as_real"
            ),
        ),
    ),
    Entry(
        "NAdam",
        "NAdam",
        domains.nadam_hyper,
        domains.nadam_state,
        paths_differ=True,
        spec_bound=bounds.nadam,
        spec_underflow=bounds.nadam_underflow,
        refused=_SCALAR_STATE_ROUNDTRIP,
    ),
    Entry(
        "RAdam",
        "RAdam",
        domains.radam_hyper,
        domains.radam_state,
        paths_differ=True,
        spec_bound=bounds.radam,
        spec_underflow=bounds.radam_underflow,
    ),
    Entry(
        "Adadelta",
        "Adadelta",
        domains.adadelta_hyper,
        domains.adadelta_state,
        spec_bound=bounds.adadelta,
        spec_underflow=bounds.adadelta_underflow,
        complex_ulp=4,
        divergences=(
            _COMPLEX_ARITHMETIC.format(
                "Adadelta",
                "the L2 term before view_as_real and, on the for-loop path, p.add_(delta, "
                "alpha=-lr) on the complex param",
            ),
        ),
    ),
    Entry(
        "ASGD",
        "ASGD",
        domains.asgd_hyper,
        domains.asgd_state,
        paths_differ=True,
        spec_bound=bounds.asgd,
        spec_underflow=bounds.asgd_absolute,
        refused=_SCALAR_STATE_ROUNDTRIP,
    ),
    Entry(
        "Rprop",
        "Rprop",
        domains.rprop_hyper,
        domains.rprop_state,
        spec_bound=bounds.rprop,
        spec_underflow=bounds.rprop_underflow,
    ),
    Entry(
        "SparseAdam",
        "SparseAdam",
        domains.sparse_adam_hyper,
        domains.sparse_adam_state,
        spec_bound=bounds.sparse_adam,
        spec_underflow=bounds.sparse_adam_absolute,
        sparse_grads="always",
        refused={
            "distributed": (
                "SparseAdam takes sparse COO gradients only, and DTensor has no sparse layout "
                "(fully_shard and DCP shard dense tensors)"
            ),
            **dict.fromkeys(
                COMPLEX_DTYPES,
                'torch.optim.SparseAdam refuses complex params (ValueError "SparseAdam does not '
                'support complex parameters"), and so does impl (tests/test_impl_sparse_adam.py)',
            ),
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
        domains.adafactor_hyper,
        domains.adafactor_state,
        elementwise=False,
        dtypes=REAL_DTYPES,
        empty_params=False,
        state_shape=domains.adafactor_state_shape,
        # impl gathers each DTensor param (docs/distributed.md#gather): torch.optim refuses 2-d
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
            "above that; the torch check draws it anywhere (docs/torch-findings.md#finding-16).",
            "eps1=None is resolved once per step for the whole group: torch's for-loop path "
            "takes the dtype of the first param with a gradient, its foreach path the first "
            "(device, dtype) bucket in hash order (float64 before float32). impl mirrors both "
            "(docs/torch-findings.md#finding-17).",
        ),
    ),
    Entry(
        "Muon",
        "Muon",
        domains.muon_hyper,
        domains.muon_state,
        elementwise=False,
        dtypes=REAL_DTYPES,
        param_dims=(2, 2),
        empty_params=False,  # an A x 0 param: torch's A / B in the lr ratio divides by zero
        # impl gathers each DTensor param (docs/distributed.md#gather): torch.optim's
        # Newton-Schulz on Shard(0) DTensors sums partial products across ranks (its sharded run
        # differs from its unsharded one) or refuses an in-place add_
        dtensor_reference="unsharded",
        refused={
            "scale_invariance:bfloat16": (
                "torch 2.13 normalises a bfloat16 momentum buffer in place without Nesterov "
                "(grad.bfloat16() is the buffer itself, then div_), so the next step's "
                "momentum mixes a scaled gradient into an unscaled buffer; impl mirrors it "
                "(docs/torch-findings.md#finding-20)"
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
        domains.lbfgs_hyper,
        domains.lbfgs_state,
        elementwise=False,
        dtypes=("float32", "float64"),
        param_dims=(0, 2),
        empty_params=False,  # every param empty: torch's flat_grad.abs().max() raises
        max_groups=1,
        objective=True,
        # impl gathers the flat gradient (docs/distributed.md#gather): torch.optim cannot
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
