"""The checks, as plain functions of (subject, case).

Each returns the largest ULP distance it saw and raises ``ConformanceError`` (an
``AssertionError``) whose message names the optimizer, hyperparameters, dtype, device, tensor,
element, expected and actual values, the ULP distance, and a snippet that replays the case
without Hypothesis (and one in plain torch). The oracles are torch.optim and the specs; nothing
here re-implements an optimizer. A subject (``conformance.subject``) is the optimizer under test
with the registry entry it claims and its contract.
"""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass, replace

import numpy as np
import torch
from hypothesis import reject
from hypothesis.errors import HypothesisException
from torch import Tensor

from conformance import repro
from conformance.case import Case, P, Sparse, real_dtype, to_numpy, to_tensor
from conformance.ulp import max_or_zero, scaled_ulp_error, spacing, ulp_distance


class ConformanceError(AssertionError):
    pass


_CONTEXTS: list = []  # the contexts of the checks running now, innermost last


def explained(check):
    """A check whose subject raises on valid input fails with the full explanation (the case,
    both reproductions) instead of a bare traceback from inside the optimizer."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        depth = len(_CONTEXTS)
        try:
            return check(*args, **kwargs)
        except (ConformanceError, HypothesisException, _Stop):
            raise
        except Exception as e:
            if len(_CONTEXTS) > depth:
                _CONTEXTS[-1].fail("a call on valid input", f"raised {e!r}")
            raise
        finally:
            del _CONTEXTS[depth:]

    return run


@dataclass
class Context:
    """What a failure message needs to explain itself."""

    check: str
    subject: object
    case: Case
    reference: str  # what "expected" is
    # for the plain-torch reproduction: the runs compared, as (class, kwargs, case) triples,
    # or the expected values themselves (spec checks)
    runs: tuple = ()

    def __post_init__(self):
        _CONTEXTS.append(self)

    @property
    def entry(self):
        return self.subject.entry

    def fail(self, what: str, detail: str) -> None:
        c = self.case
        groups = [{k: v for k, v in g.items() if k != "params"} for g in c.groups]
        raise ConformanceError(
            f"{self.check}: {self.subject.label} (as {self.entry.name}, {self.subject.contract} "
            f"contract) disagrees with {self.reference}\n"
            f"  dtype={c.dtype} device={c.device} foreach={c.foreach} "
            f"torch_foreach={c.torch_foreach} tensor_lr={c.tensor_lr}\n"
            f"  hyperparameters per group: {groups}\n"
            f"  at {what}: {detail}\n"
            f"Reproduce in plain torch:\n{repro.plain_torch(self.runs, self.case, what)}"
            f"Reproduce without Hypothesis:\n{snippet(self)}"
        )


def snippet(ctx: Context) -> str:
    """Replays the case through the harness (``SUBJECT`` as in the failing run)."""
    s = ctx.subject
    return (
        "    import numpy as np\n"
        "    from conformance import checks, registry\n"
        "    from conformance.case import Case, Objective, P, Sparse\n"
        "    from conformance.subject import Subject, load_class\n"
        f"    case = {ctx.case!r}\n".replace("\n     ", "\n         ")
        + f"    SUBJECT = Subject(load_class({repro.import_path(s.cls)!r}), "
        f"registry.BY_NAME[{ctx.entry.name!r}], {dict(s.kwargs)!r}, {s.contract!r}, "
        f"{s.reference!r})\n" + f"    checks.CHECKS[{ctx.check!r}](SUBJECT, case)"
    )


def _element(t: Tensor, flat_index: int):
    if t.dim() == 0:
        return ()
    return tuple(int(i) for i in np.unravel_index(flat_index, tuple(t.shape)))


def assert_ulp(ctx: Context, what: str, actual: Tensor, expected: Tensor, bound: float) -> float:
    """ULP distance between two tensors of the same dtype, shape, device and layout; raise above
    bound. Sparse tensors (SGD's momentum buffer after a sparse gradient) compare as stored: the
    same indices in the same order, coalesced or not alike, values within the bound."""
    for attr in ("dtype", "shape", "device", "layout"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
    if expected.is_sparse:
        if actual.is_coalesced() != expected.is_coalesced():
            ctx.fail(what, f"is_coalesced() {actual.is_coalesced()} != {expected.is_coalesced()}")
        if not torch.equal(actual._indices(), expected._indices()):
            ctx.fail(
                what, f"indices {actual._indices().tolist()} != {expected._indices().tolist()}"
            )
        return assert_ulp(ctx, f"{what} (values)", actual._values(), expected._values(), bound)
    dist = ulp_distance(actual, expected)
    worst = max_or_zero(dist)
    if worst > bound:
        flat = int(dist.reshape(-1).argmax())
        a, e = torch.view_as_real(actual) if actual.is_complex() else actual, expected
        e = torch.view_as_real(e) if e.is_complex() else e
        idx = _element(a, flat)
        ctx.fail(
            what,
            f"element {idx}: expected {e.reshape(-1)[flat].item()!r}, "
            f"actual {a.reshape(-1)[flat].item()!r}, {worst:g} ULP (allowed {bound})",
        )
    return worst


def assert_scaled(
    ctx, what, actual: np.ndarray, exact: np.ndarray, ref: np.ndarray, dtype, bound, absolute=0.0
):
    """Error of ``actual`` vs the correctly rounded ``exact`` in ULPs at scale (see ulp.py).

    ``absolute`` (value units, broadcast per element) is an allowance on top of ``bound``: the
    underflow terms of the registry's analysis, converted at each element's own scale."""
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    ref = np.broadcast_to(np.asarray(ref, np.float64), exact.shape)
    if actual.shape != exact.shape:
        ctx.fail(what, f"shape {actual.shape} != expected {exact.shape}")
    err = scaled_ulp_error(*(torch.from_numpy(np.array(x)) for x in (actual, exact, ref)), dtype)
    worst = max_or_zero(err)
    scale = torch.from_numpy(np.array(np.maximum(np.abs(exact), np.abs(ref))))
    allowed = bound + torch.from_numpy(
        np.broadcast_to(np.asarray(absolute, np.float64), exact.shape).copy()
    ) / spacing(scale, dtype)
    over = err - allowed
    if over.numel() and float(over.nan_to_num(nan=np.inf).max()) > 0:
        flat = int(over.nan_to_num(nan=np.inf).reshape(-1).argmax())
        worst = float(err.reshape(-1)[flat])
        bound = f"{float(allowed.reshape(-1)[flat]):.3g}" if np.any(absolute) else bound
        idx = tuple(int(i) for i in np.unravel_index(flat, exact.shape)) if exact.ndim else ()
        ctx.fail(
            what,
            f"element {idx}: expected {exact.reshape(-1)[flat]!r} (exact, rounded to {dtype}), "
            f"actual {actual.reshape(-1)[flat]!r}, {worst:.3g} ULP at scale "
            f"{max(abs(exact.reshape(-1)[flat]), abs(ref.reshape(-1)[flat]))!r} "
            f"(allowed {bound})",
        )
    return worst


# -- running an optimizer on a case ---------------------------------------------------------------
def set_grads(params: list[Tensor], grads: list[Tensor | None]) -> None:
    for p, g in zip(params, grads, strict=True):
        p.grad = g


def run(subject, case: Case, *, foreach=None, steps=None, on_step=None):
    """Build the subject on fresh params with the case's state and take ``steps`` steps."""
    params = case.make_params()
    opt = subject.build(case, params, foreach=foreach)
    for t in range(case.steps if steps is None else steps):
        case.step(opt, params, t)
        if on_step is not None:
            on_step(t, params, opt)
    return opt, params


def _index(opt, p) -> int:
    return [id(q) for g in opt.param_groups for q in g["params"]].index(id(p))


def compare_states(
    ctx: Context, t: int, actual_opt, expected_opt, bound: float, ignore=()
) -> float:
    """Both optimizers' state_dicts: same layout, same group hyperparameters, state within bound."""
    a, e = actual_opt.state_dict(), expected_opt.state_dict()
    at = f"step {t + 1}" if t >= 0 else "start"
    worst = 0.0
    for k, (ga, ge) in enumerate(zip(a["param_groups"], e["param_groups"], strict=True)):
        if set(ga) != set(ge):
            ctx.fail(f"{at}, param_groups[{k}]", f"keys {sorted(ga)} != {sorted(ge)}")
        for key in set(ge) - {"foreach", *ignore}:  # the path is drawn independently per side
            va, ve = ga[key], ge[key]
            same = torch.equal(va, ve) if isinstance(ve, Tensor) else va == ve
            if not same:
                ctx.fail(f"{at}, param_groups[{k}][{key!r}]", f"{va!r} != {ve!r}")
    if set(a["state"]) != set(e["state"]):
        ctx.fail(f"{at}, state", f"params {sorted(a['state'])} != {sorted(e['state'])}")
    for i, se in e["state"].items():
        sa = a["state"][i]
        if set(sa) != set(se):
            ctx.fail(f"{at}, state[{i}]", f"keys {sorted(sa)} != expected {sorted(se)}")
        for key, ve in se.items():
            worst = max(
                worst, _compare_value(ctx, f"{at}, state[{i}][{key!r}]", sa[key], ve, bound)
            )
    return worst


def _compare_value(ctx: Context, where: str, va, ve, bound: float) -> float:
    """A state value: a tensor within ``bound``, a list of them (LBFGS's history) element by
    element, anything else equal and of the same type."""
    if isinstance(ve, Tensor) and isinstance(va, Tensor):
        return assert_ulp(ctx, where, va, ve, bound)
    if isinstance(ve, list) and isinstance(va, list):
        if len(va) != len(ve):
            ctx.fail(where, f"{len(va)} entries != expected {len(ve)}")
        distances = [
            _compare_value(ctx, f"{where}[{k}]", a, e, bound)
            for k, (a, e) in enumerate(zip(va, ve))
        ]
        return max(distances, default=0.0)
    if not (type(va) is type(ve) and (va == ve or (va != va and ve != ve))):
        ctx.fail(where, f"{va!r} != expected {ve!r}")
    return 0.0


def _same_path(fe_a, fe_e) -> bool:
    return bool(fe_a) == bool(fe_e)  # on CPU foreach=None is the for-loop path


def _attempt(fn):
    try:
        return fn(), None
    except Exception as e:  # an error torch raises must be raised the same way by impl
        return None, e


def _same_error(ctx, at: str, err_a, err_e, same_path: bool) -> None:
    """Errors are part of the contract: where the reference raises, so must the subject."""
    if err_a is None and err_e is None:
        return
    if not same_path:
        reject()  # different paths may legitimately reject different inputs
    if (
        err_a is None
        or err_e is None
        or type(err_a) is not type(err_e)
        or _message(err_a) != _message(err_e)
    ):
        ctx.fail(at, f"raised {err_a!r}, expected {err_e!r}")
    raise _Stop


def _message(error: Exception) -> str:
    """The message, less what torch's argument parser says of the caller's own code: which
    Python sequence it keeps its tensors in ("got (list, ...)" vs "(tuple, ...)") and whether
    the kernel that refused the argument was the in-place one ("_foreach_add_()" vs
    "_foreach_add()", seen by conformance-explore for a tensor weight_decay). The refused
    argument and the signatures it was checked against stay compared."""
    text = re.sub(r" - got \([^\n]*\), but expected", " - got (...), but expected", str(error))
    return re.sub(r"\b(_foreach_\w+?)_?\(\) received", r"\1() received", text)


class _Stop(Exception):
    """Both sides raised the same error: nothing more to compare."""


def compare_runs(
    ctx: Context, case: Case, actual, expected, bound=0.0, ignore=(), judge_errors=True
) -> float:
    """Run two (subject, foreach, case) triples in lockstep; compare params and state every step.

    ``bound=math.inf`` reports the distance without judging it (the ``ulp`` contract vs torch).
    Errors are judged where both run the same path (different paths may legitimately reject
    different inputs) and ``judge_errors``; elsewhere an example where they differ is rejected.
    """
    (sub_a, fe_a, case_a), (sub_e, fe_e, case_e) = actual, expected
    ctx.runs = (repro.run_of(sub_a, fe_a, case_a), repro.run_of(sub_e, fe_e, case_e))
    same_path = judge_errors and (judge_errors == "always" or sub_a.path(fe_a) == sub_e.path(fe_e))
    pa, pe = case_a.make_params(), case_e.make_params()
    try:
        oa, err_a = _attempt(lambda: sub_a.build(case_a, pa, foreach=fe_a))
        oe, err_e = _attempt(lambda: sub_e.build(case_e, pe, foreach=fe_e))
        _same_error(ctx, "construction", err_a, err_e, same_path)
        worst = compare_states(ctx, -1, oa, oe, bound, ignore)
        for t in range(case.steps):
            _, err_a = _attempt(lambda t=t: case_a.step(oa, pa, t))
            _, err_e = _attempt(lambda t=t: case_e.step(oe, pe, t))
            _same_error(ctx, f"step {t + 1}", err_a, err_e, same_path)
            for i, (x, y) in enumerate(zip(pa, pe, strict=True)):
                worst = max(worst, assert_ulp(ctx, f"step {t + 1}, param {i}", x, y, bound))
            worst = max(worst, compare_states(ctx, t, oa, oe, bound, ignore))
    except _Stop:
        return 0.0
    return worst


# -- vs torch.optim ----------------------------------------------------------------------------
@explained
def matches_torch(subject, case: Case) -> float:
    """The subject and torch.optim from the same state on the same gradients: params and every
    state tensor after every step. ``bitwise`` contract: equal bit for bit (unless
    ``entry.torch_ulp`` declares a bound); ``ulp`` contract: the distance to torch's for-loop
    path is returned for the report, never judged. The subject's own flags are not compared."""
    reference = torch_reference(subject)
    torch_foreach = subject.reference_foreach(case)
    path = "foreach" if torch_foreach else "for-loop"
    ctx = Context("torch", subject, case, f"torch.optim.{subject.entry.torch_name} ({path} path)")
    bound = subject.entry.torch_ulp.get(case.dtype, 0) if subject.bitwise else math.inf
    return compare_runs(
        ctx,
        case,
        (subject, case.foreach, case),
        (reference, torch_foreach, case),
        bound,
        subject.own_flags,
        # ulp: how bad input is refused is the errors check's; bitwise against a named path:
        # whatever path the subject runs, it promised that path's behaviour
        judge_errors=subject.bitwise and ("always" if subject.reference != "matching" else True),
    )


def torch_reference(subject):
    """torch.optim's class for the subject's entry, as a subject without flags of its own."""
    from conformance.subject import Subject

    return Subject(
        subject.entry.reference, subject.entry, label=f"torch.optim.{subject.entry.torch_name}"
    )


# -- vs the spec -----------------------------------------------------------------------------------
def _spec_state(state: dict) -> dict:
    return {k: (float(v) if k == "step" else to_numpy(v)) for k, v in state.items()}


def _untouched(case: Case, t: int, i: int):
    """Mask of param ``i``'s elements its step-``t`` sparse gradient does not name (None: dense)."""
    g = case.grads[t][i]
    return ~g.touched(case.shape(i)) if isinstance(g, Sparse) else None


def assert_untouched_kept(ctx, what: str, actual, before, exact, untouched) -> None:
    """Where a sparse gradient names no element and the exact step keeps its value (Adagrad's
    untouched rows, SGD's without momentum; ``exact=None``: every element not named, as
    SparseAdam promises), the subject keeps it bit for bit: a ULP bound there would let a
    kernel that rewrites every row pass."""
    if untouched is None:
        return
    actual = np.asarray(actual, np.float64)
    before = np.broadcast_to(np.asarray(before, np.float64), actual.shape)
    kept = untouched if exact is None else untouched & (np.asarray(exact) == before)
    same = (actual == before) & (np.signbit(actual) == np.signbit(before))
    moved = kept & ~(same | np.isnan(actual) & np.isnan(before))
    if moved.any():
        idx = tuple(int(k) for k in np.argwhere(moved)[0])
        ctx.fail(
            what,
            f"element {idx}, which the sparse gradient does not name, changed "
            f"{before[idx]!r} -> {np.asarray(actual)[idx]!r}",
        )


@explained
def matches_spec(subject, case: Case) -> float:
    """One step from the case's starting state vs the spec's exact value, correctly rounded into
    the dtype, within ``entry.spec_bound`` (ULPs at scale) plus ``entry.spec_underflow``. Params
    without a gradient must not move and their state must not change. A sparse gradient is
    judged as its dense form (``case.Sparse``: unique indices here, so that form is exact), and
    elements it does not name that the exact step keeps must be kept bit for bit."""
    entry = subject.entry
    ctx = Context("spec", subject, case, f"spec {entry.torch_name} (exact, correctly rounded)")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    dtype = real_dtype(case.torch_dtype)
    worst = 0.0
    for _, i, group, spec_hyper, inputs, actual in _steps_with_inputs(
        subject, case.replace(grads=case.grads[:1])
    ):
        if inputs["grad"] is None:
            unchanged = np.array_equal(actual["param"], inputs["param"], equal_nan=True)
            if not unchanged or actual.keys() - {"param"} != inputs.keys() - {"param", "grad"}:
                ctx.fail(f"param {i} (grad None)", "moved or its state changed")
            continue
        untouched = _untouched(case, 0, i)
        w = _judge_step(
            ctx, subject, group, spec_hyper, dtype, f"param {i}", inputs, actual, untouched
        )
        worst = max(worst, w)
    return worst


def _judge_step(ctx, subject, group, spec_hyper, dtype, where, inputs, actual, untouched) -> float:
    """One param's step vs ``spec.step_exact`` from ``inputs`` ("param", "grad" and the starting
    state): every output within ``entry.spec_bound`` + ``spec_underflow`` of the exact value
    correctly rounded, ``step`` exactly. ``untouched``: the elements a sparse gradient does not
    name (``assert_untouched_kept``); an optimizer that takes only sparse gradients (SparseAdam)
    is judged on the named elements only, its spec being the rule for those."""
    entry, (spec, hyper) = subject.entry, spec_hyper
    state_before = {k: v for k, v in inputs.items() if k not in ("param", "grad")}
    exact = spec.step_exact(inputs["param"], inputs["grad"], state_before, hyper, dtype)
    bounds = entry.spec_bound(group, inputs, dtype)
    underflow = entry.spec_underflow(group, inputs, exact, dtype)
    rows_only = untouched is not None and entry.sparse_grads == "always"
    worst = 0.0
    for key, value in exact.items():
        if key not in actual:
            ctx.fail(f"{where} state", f"missing {key!r} (has {sorted(actual)})")
        if key == "step":
            if actual["step"] != value:
                ctx.fail(f"{where} state 'step'", f"{actual['step']} != {value}")
            continue
        what = where if key == "param" else f"{where} state {key!r}"
        ref = inputs[key] if key == "param" else state_before.get(key, 0.0)
        assert_untouched_kept(ctx, what, actual[key], ref, None if rows_only else value, untouched)
        got, absolute = actual[key], underflow.get(key, 0.0)
        if rows_only:  # the named elements, as a flat array
            named = ~untouched
            got, value, ref, absolute = (
                np.broadcast_to(np.asarray(x, np.float64), named.shape)[named]
                for x in (got, value, ref, absolute)
            )
        w = assert_scaled(
            ctx,
            what,
            got,
            value,
            ref,
            spec.output_dtype(key, dtype),
            bounds[key],
            absolute,
        )
        worst = max(worst, w)
    return worst


@explained
def trajectory_matches_spec(subject, case: Case) -> float:
    """Several steps, each judged as a one-step check: at every step the subject's result vs
    ``spec.step_exact`` (correctly rounded) from the subject's *own* params and state after the
    previous step, within the derived one-step bound (``entry.spec_bound`` +
    ``spec_underflow``). No error accumulates in the reference, so the bound is the one-step
    theorem along a whole trajectory (issue 13: the old float64-oracle drift bound of 1024 ULPs
    was never derived and failed at 1.2e3)."""
    entry = subject.entry
    ctx = Context("spec_trajectory", subject, case, f"spec {entry.torch_name} (exact, per step)")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    worst = 0.0
    for t, i, group, spec_hyper, inputs, actual in _steps_with_inputs(subject, case):
        if inputs["grad"] is None:
            continue
        where = f"step {t + 1}, param {i}"
        untouched = _untouched(case, t, i)
        dtype = real_dtype(case.torch_dtype)
        w = _judge_step(ctx, subject, group, spec_hyper, dtype, where, inputs, actual, untouched)
        worst = max(worst, w)
    return worst


def _steps_with_inputs(subject, case: Case):
    """Run the subject on the case and yield, after every step and for every param,
    ``(t, i, group, (spec, hyper), inputs, actual)``: the step's inputs ("param", "grad" (None:
    no gradient) and the starting state, as float64 arrays) and its outputs."""
    import specs

    params = case.make_params()
    opt = subject.build(case, params, foreach=case.foreach)
    for t in range(case.steps):
        before = [to_numpy(p) for p in params]
        state_before = [_spec_state(opt.state[p]) if p in opt.state else {} for p in params]
        grads = case.make_grads(t)
        # read before stepping: a subject that writes into p.grad is judged on what it was given
        given = [None if g is None else to_numpy(g) for g in grads]
        set_grads(params, grads)
        opt.step()
        for group in opt.param_groups:
            spec_hyper = specs.for_group(subject.entry.torch_name, group)
            for p in group["params"]:
                i = next(j for j, q in enumerate(params) if q is p)
                inputs = {"param": before[i], "grad": given[i], **state_before[i]}
                actual = {"param": to_numpy(p), **_spec_state(opt.state.get(p, {}))}
                yield t, i, group, spec_hyper, inputs, actual


@explained
def sparse_rows(subject, case: Case) -> float:
    """SparseAdam on sparse gradients, repeated indices included, any values: (1) the same steps
    on each gradient's coalesced form give bitwise the same params and state; (2) at every
    step, each element its gradient does not name keeps its param and moments bit for bit. On
    the named elements the spec checks judge it (``specs.sparse_adam``, which
    ``specs.proofs`` proves is dense Adam with eps scaled by 1/sqrt(1 - beta2**t))."""
    ctx = Context("sparse_rows", subject, case, "the same steps on coalesced gradients")
    coalesced = case.replace(
        grads=[
            [replace(g, coalesced=True) if isinstance(g, Sparse) else g for g in gs]
            for gs in case.grads
        ]
    )
    worst = compare_runs(
        ctx, case, (subject, case.foreach, case), (subject, case.foreach, coalesced)
    )
    ctx = Context("sparse_rows", subject, case, "the elements before step()")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    for t, i, _, _, inputs, actual in _steps_with_inputs(subject, case):
        untouched = None if inputs["grad"] is None else _untouched(case, t, i)
        for key, value in actual.items():
            if key != "step" and untouched is not None:
                ref = inputs.get(key, 0.0)  # a fresh state starts at zeros
                assert_untouched_kept(
                    ctx, f"step {t + 1}, param {i} {key}", value, ref, None, untouched
                )
    return worst


# -- invariants ----------------------------------------------------------------------------------
@explained
def maximize_is_minimizing_negation(subject, case: Case) -> float:
    """maximize=True on gradients g is bitwise minimize on -g (params and state, every step)."""
    entry = subject.entry
    ctx = Context("maximize", subject, case, "the same optimizer minimizing -f")
    up = case.replace(groups=[{**g, "maximize": True} for g in case.groups])
    down_groups, ignore = [], {"maximize"}
    for g in case.groups:
        g = {**g, "maximize": False}
        if entry.maximize_rounds_lr(g, case.torch_dtype, subject.path(case.foreach) == "foreach"):
            # the maximize side multiplies by -clr rounded into the dtype (registry): minimize
            # at that rounded lr, bitwise; with lr_decay the per-step clr has no such lr
            if g.get("lr_decay", 0) != 0 or case.tensor_lr:
                reject()
            g["lr"] = float(torch.tensor(g["lr"], dtype=torch.float64).to(case.torch_dtype))
            ignore = {"maximize", "lr"}
        down_groups.append(g)
    down = case.replace(
        groups=down_groups,
        grads=[[None if g is None else -g for g in gs] for gs in case.grads],
    )
    bound = entry.maximize_ulp.get(case.dtype, 0)
    return compare_runs(
        ctx,
        case,
        (subject, case.foreach, up),
        (subject, case.foreach, down),
        bound,
        ignore,
    )


@explained
def complex_is_real_pair(subject, case: Case) -> float:
    """A complex param behaves like its view_as_real pair (within ``entry.complex_ulp``)."""
    entry = subject.entry
    ctx = Context("complex_as_real", subject, case, "the same optimizer on view_as_real params")
    real = case.replace(dtype=str(real_dtype(case.torch_dtype)).removeprefix("torch."))
    pc, pr = case.make_params(), real.make_params()
    ctx.runs = (
        repro.run_of(subject, case.foreach, case),
        repro.run_of(subject, case.foreach, real),
    )
    oc = subject.build(case, pc, foreach=case.foreach)
    orr = subject.build(real, pr, foreach=case.foreach)
    worst = 0.0
    # a nonzero bound means the two paths round differently; multi-step they would drift apart
    steps = 1 if entry.complex_ulp else case.steps
    for t in range(steps):
        set_grads(pc, case.make_grads(t))
        set_grads(pr, real.make_grads(t))
        oc.step()
        orr.step()
        for i, (x, y) in enumerate(zip(pc, pr, strict=True)):
            if entry.complex_ulp:  # different roundings: ULPs at the scale of the step's operands
                w = assert_scaled(
                    ctx,
                    f"step {t + 1}, param {i}",
                    to_numpy(x),
                    to_numpy(y),
                    case.params[i].values,
                    real_dtype(case.torch_dtype),
                    entry.complex_ulp,
                )
            else:
                w = assert_ulp(
                    ctx, f"step {t + 1}, param {i}", torch.view_as_real(x), y, entry.complex_ulp
                )
            worst = max(worst, w)
        for i, (x, y) in enumerate(zip(pc, pr, strict=True)):
            for key, v in oc.state.get(x, {}).items():
                w = orr.state[y][key]
                v = torch.view_as_real(v) if v.is_complex() else v
                if entry.complex_ulp and key != "step":
                    ref = case.state.get(i, {}).get(key, 0.0)
                    worst = max(
                        worst,
                        assert_scaled(
                            ctx,
                            f"step {t + 1}, state[{i}][{key!r}]",
                            to_numpy(v),
                            to_numpy(w),
                            ref,
                            real_dtype(case.torch_dtype),
                            entry.complex_ulp,
                        ),
                    )
                    continue
                worst = max(
                    worst,
                    assert_ulp(ctx, f"step {t + 1}, state[{i}][{key!r}]", v, w, entry.complex_ulp),
                )
    return worst


@explained
def state_dict_roundtrip(subject, case: Case) -> float:
    """Saving after step k and loading into a fresh optimizer (fresh param tensors) continues
    bitwise like the uninterrupted run."""
    ctx = Context("state_dict_roundtrip", subject, case, "the uninterrupted run")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    split = case.steps // 2
    straight, p_straight = run(subject, case, foreach=case.foreach)
    first, p_first = run(subject, case, foreach=case.foreach, steps=split)
    saved = copy.deepcopy(first.state_dict())
    del first
    # fresh tensors with the same memory layout: in float16/bfloat16 torch's kernels round
    # differently on contiguous and strided tensors (1 ULP seen), which is not what is tested here
    resumed_params = [
        to_tensor(to_numpy(p), case.torch_dtype, case.device, spec.layout)
        for p, spec in zip(p_first, case.params, strict=True)
    ]
    resumed = subject.build(case.replace(state={}), resumed_params, foreach=case.foreach)
    try:
        resumed.load_state_dict(saved)
        for t in range(split, case.steps):
            case.step(resumed, resumed_params, t)
    except Exception as e:  # its own state_dict must load and run
        ctx.fail(f"resuming after step {split}", f"raised {e!r}")
    worst = 0.0
    for i, (x, y) in enumerate(zip(resumed_params, p_straight, strict=True)):
        worst = max(worst, assert_ulp(ctx, f"after step {case.steps}, param {i}", x, y, 0))
    return max(worst, compare_states(ctx, case.steps - 1, resumed, straight, 0))


@explained
def grad_untouched(subject, case: Case) -> float:
    """step() leaves every p.grad as it was: the same tensor object, the same bits."""
    ctx = Context("grad_untouched", subject, case, "the gradient before step()")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    params = case.make_params()
    opt = subject.build(case, params, foreach=case.foreach)
    for t in range(case.steps):
        if case.objective is None:
            grads = case.make_grads(t)
            set_grads(params, grads)
            copies = [None if g is None else g.clone() for g in grads]
            opt.step()
        else:  # the closure sets them: its last call's gradients, recomputed from its params
            calls: list = []
            grads = case.step(opt, params, t, calls)
            copies = case.objective.evaluate(calls[-1])[1]
        for i, (p, g, c) in enumerate(zip(params, grads, copies, strict=True)):
            if p.grad is not g:
                ctx.fail(f"step {t + 1}, param {i}", "p.grad was replaced")
            if g is not None:
                assert_ulp(ctx, f"step {t + 1}, grad of param {i}", g, c, 0)
    return 0.0


@explained
def deterministic(subject, case: Case) -> float:
    """Two runs on the same inputs are bitwise identical."""
    ctx = Context("deterministic", subject, case, "a second identical run")
    return compare_runs(ctx, case, (subject, case.foreach, case), (subject, case.foreach, case))


@explained
def nesterov_lookahead(subject, problem, hyper: dict, steps: int) -> float:
    """impl's Nesterov SGD on a smooth loss tracks the look-ahead definition
    (specs.VARIANTS["nesterov:lookahead"], gradient at x - lr*mu*v): at every step
    ``p_t == x_t - lr*mu*buf_t`` within ``entry.trajectory_ulp`` ULPs at scale (float64)."""
    import specs

    x0, a, b, c = problem
    case = Case("float64", "cpu", [P(x0)], [{**hyper, "params": [0]}], {}, [[None]] * steps)
    entry = subject.entry
    ctx = Context("nesterov_lookahead", subject, case, "the look-ahead iteration (spec variant)")
    ctx.runs = (repro.run_of(subject, None, case),)
    a_t, b_t = torch.from_numpy(a), torch.from_numpy(b)

    def grad(x: Tensor) -> Tensor:
        x = x.detach().clone().requires_grad_(True)
        f = 0.5 * x @ a_t @ x + b_t @ x + c * (x**4).sum()
        (g,) = torch.autograd.grad(f, x)
        return g

    lr, mu = hyper["lr"], hyper["momentum"]
    oracle = specs.VARIANTS["nesterov:lookahead"].run_float64(
        x0, lambda x: grad(torch.from_numpy(np.array(x))).numpy(), {"lr": lr, "momentum": mu}, steps
    )
    p = torch.from_numpy(x0.copy())
    opt = subject.cls([p], **{**hyper, **subject.kwargs})
    worst = 0.0
    for t in range(steps):
        p.grad = grad(p)
        opt.step()
        look_ahead = oracle[t + 1] - lr * mu * to_numpy(opt.state[p]["momentum_buffer"])
        w = assert_scaled(
            ctx,
            f"step {t + 1}",
            to_numpy(p),
            look_ahead,
            np.maximum(np.abs(oracle[t + 1]), 1.0),
            torch.float64,
            entry.trajectory_ulp,
        )
        worst = max(worst, w)
    return worst


# -- memory safety ---------------------------------------------------------------------------------
GUARD = 3  # canary elements before, between and after the carved tensors
CANARY = -3.25  # exact in every dtype; any value works, only "unchanged" is checked


def carve(values: list, layouts: list[str], dtype: torch.dtype, device: str):
    """Tensors holding ``values`` as views into one shared buffer, with ``GUARD`` canary elements
    around each and, for "strided" layouts, canaries in the holes between elements too; the
    buffer's second half is canaries."""
    blocks = [to_tensor(v, dtype, device) for v in values]
    sizes = [t.numel() * (2 if layout == "strided" else 1) for t, layout in zip(blocks, layouts)]
    # as many canaries again after the last guard: a kernel that misplaces a view by its storage
    # offset (torch 2.13's dense.add_(sparse) writes at twice it) lands on canaries, not on
    # memory the process does not own
    used = GUARD + sum(n + GUARD for n in sizes)
    buffer = torch.full((2 * used,), CANARY, dtype=dtype, device=device)
    views, offset = [], GUARD
    for t, layout, n in zip(blocks, layouts, sizes):
        block = buffer[offset : offset + n]
        if layout == "strided":
            view = block.view(*t.shape[:-1], 2 * t.shape[-1])[..., ::2]
        elif layout == "transposed":
            view = block.view(*t.shape[:-2], t.shape[-1], t.shape[-2]).mT
        else:
            view = block.view(t.shape)
        view.copy_(t)
        views.append(view)
        offset += n + GUARD
    return buffer, views


def owned_elements(buffer: Tensor, views: list[Tensor]) -> Tensor:
    """Boolean mask over ``buffer``: the elements some view in ``views`` covers."""
    owned = torch.zeros(buffer.numel(), dtype=torch.bool)
    index = torch.arange(buffer.numel())
    for v in views:
        owned[index.as_strided(v.shape, v.stride(), v.storage_offset())] = True
    return owned


def _unchanged_outside(ctx, at: str, buffer: Tensor, before: Tensor, owned: Tensor) -> None:
    changed = (ulp_distance(buffer, before) != 0).reshape(buffer.numel(), -1).any(dim=1)
    stray = changed & ~owned
    if stray.any():
        k = int(stray.nonzero()[0])
        old, new = before[k].item(), buffer[k].item()
        ctx.fail(
            at, f"storage element {k}, which belongs to no parameter, changed {old!r} -> {new!r}"
        )


@explained
def memory_safety(subject, case: Case) -> float:
    """A step writes nothing outside its own parameters' elements.

    Params are views into one shared storage (strided slices, transposes, offsets) with canary
    elements around and between them; gradients likewise. After every step the canaries, the
    holes of strided params and every gradient element are bitwise unchanged.
    """
    ctx = Context("memory_safety", subject, case, "the storage before step()")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    dtype, layouts = case.torch_dtype, [p.layout for p in case.params]
    buffer, params = carve([p.values for p in case.params], layouts, dtype, case.device)
    owned = owned_elements(buffer, params)
    opt = subject.build(case, params, foreach=case.foreach)
    for t in range(case.steps):
        # dense gradients are carved like the params; a sparse one is its own COO tensor
        present = [i for i, g in enumerate(case.grads[t]) if g is not None]
        dense = [i for i in present if not isinstance(case.grads[t][i], Sparse)]
        grad_buffer, grads = carve(
            [case.grads[t][i] for i in dense], [layouts[i] for i in dense], dtype, case.device
        )
        set_grads(params, [None] * len(params))
        for i, g in zip(dense, grads):
            params[i].grad = g
        for i in set(present) - set(dense):
            params[i].grad = case.make_grad(case.grads[t][i], i)
        before, grads_before = buffer.clone(), grad_buffer.clone()
        if case.objective is None:
            opt.step()
        else:  # the closure sets gradients of its own
            case.step(opt, params, t)
        _unchanged_outside(ctx, f"step {t + 1}, params' storage", buffer, before, owned)
        nothing = torch.zeros(grad_buffer.numel(), dtype=torch.bool)
        _unchanged_outside(
            ctx, f"step {t + 1}, gradients' storage", grad_buffer, grads_before, nothing
        )
    return 0.0


# -- bad input -------------------------------------------------------------------------------------
@dataclass
class _BadInputContext(Context):
    """A Context whose reproductions define ``nan`` and ``inf`` (bad cases hold them as values,
    and ``repr(float("nan"))`` is ``nan``) and pass the case's constructor ``defaults``."""

    defaults: dict | None = None

    def fail(self, what: str, detail: str) -> None:
        try:
            super().fail(what, detail)
        except ConformanceError as e:
            text = str(e)
            for line in ("\n    import torch\n", "\n    import numpy as np\n"):
                text = text.replace(line, line + _NONFINITE, 1)
            if self.defaults:
                call = f"checks.CHECKS[{self.check!r}](SUBJECT, case)"
                text = text.replace(call, f"{call[:-1]}, defaults={self.defaults!r})")
            raise ConformanceError(text) from None


_NONFINITE = "    from math import inf, nan\n"


def _equal(a, b) -> bool:
    """Hyperparameter or state value equality that tensors (in tuples too) and NaN survive."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(_bits(a), _bits(b))
        )
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _bits(t: Tensor) -> Tensor:
    t = t.detach()
    if t.is_sparse:  # as stored: indices, then values
        return torch.cat([_bits(t._indices()), _bits(t._values())])
    t = torch.view_as_real(t) if t.is_complex() else t
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    flat = torch.empty(t.numel(), dtype=t.dtype)  # stride 1, even where t has one element
    return flat.copy_(t.reshape(-1)).view(torch.uint8)


def _snapshot(params: list[Tensor], opt) -> tuple:
    """The bits of the params and of every state_dict tensor (other state values as copies)."""
    state = {
        i: {k: _bits(v) if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in s.items()}
        for i, s in opt.state_dict()["state"].items()
    }
    return [_bits(p) for p in params], state


def _change(before: tuple, params: list[Tensor], opt) -> tuple[str, str] | None:
    """The first param or state entry that differs from the snapshot ``before``, bit for bit
    (NaNs included), as (where, what), or None."""
    params_before, state_before = before
    params_after, state_after = _snapshot(params, opt)
    for i, (x, y) in enumerate(zip(params_after, params_before, strict=True)):
        if not torch.equal(x, y):
            return f"param {i}", "changed"
    if state_after.keys() != state_before.keys():
        return "state", f"params with state {sorted(state_after)}, before {sorted(state_before)}"
    for i, sb in state_before.items():
        sa = state_after[i]
        if sa.keys() != sb.keys():
            return f"state[{i}]", f"keys {sorted(sa)}, before {sorted(sb)}"
        for key, vb in sb.items():
            va = sa[key]
            if not _equal(va, vb):
                return f"state[{i}][{key!r}]", "changed"
    return None


def assert_same_nonfinite(ctx: Context, what: str, actual: Tensor, expected: Tensor) -> None:
    """NaN where the expected tensor has NaN, and infinities of the same sign where it has
    infinities; finite values are not compared (``assert_ulp`` with ``bound=inf`` judges
    nothing, NaN against a number included)."""
    for attr in ("dtype", "shape", "device"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
    a, e = (x.detach().cpu() for x in (actual, expected))
    a = torch.view_as_real(a) if a.is_complex() else a
    e = torch.view_as_real(e) if e.is_complex() else e
    # 0: finite, 1: NaN, 2: +inf, 3: -inf
    kind_a, kind_e = (
        x.isnan().long() + 2 * x.isposinf().long() + 3 * x.isneginf().long() for x in (a, e)
    )
    differ = (kind_a != kind_e).reshape(-1)
    if differ.any():
        flat = int(differ.nonzero()[0])
        ctx.fail(
            what,
            f"element {_element(a, flat)}: expected {e.reshape(-1)[flat].item()!r}, "
            f"actual {a.reshape(-1)[flat].item()!r} ({int(differ.sum())} elements differ in "
            "their non-finite pattern)",
        )


def _compare_bad(ctx, t: int, pa, pe, oa, oe, bound, ignore) -> float:
    """After a step both took: ``bound`` (bitwise contract) judges every element; ``None``
    (ulp contract) only the non-finite pattern of params and state tensors."""
    at = f"step {t + 1}" if t >= 0 else "start"
    worst = 0.0
    # group hyperparameters here, not in compare_states: bad ones are NaN or hold tensors
    groups_a, groups_e = oa.state_dict()["param_groups"], oe.state_dict()["param_groups"]
    for k, (ga, ge) in enumerate(zip(groups_a, groups_e, strict=True)):
        for key in sorted(set(ge) & set(ga) - set(ignore) - {"params"}):
            if not _equal(ga[key], ge[key]):
                ctx.fail(f"{at}, param_groups[{k}][{key!r}]", f"{ga[key]!r} != {ge[key]!r}")
    ignore = {*ignore, *(key for g in groups_e for key in g)}
    for i, (x, y) in enumerate(zip(pa, pe, strict=True)):
        if bound is None:
            assert_same_nonfinite(ctx, f"{at}, param {i}", x, y)
        else:
            worst = max(worst, assert_ulp(ctx, f"{at}, param {i}", x, y, bound))
    worst = max(worst, compare_states(ctx, t, oa, oe, math.inf if bound is None else bound, ignore))
    if bound is None:
        worst = 0.0  # distances on bad input are not reported under the ulp contract
        sa, se = oa.state_dict()["state"], oe.state_dict()["state"]
        for i, state in se.items():
            for key, ve in state.items():
                if isinstance(ve, Tensor) and isinstance(sa[i][key], Tensor):
                    assert_same_nonfinite(ctx, f"{at}, state[{i}][{key!r}]", sa[i][key], ve)
    return worst


@explained
def errors_like_reference(subject, case: Case, defaults: dict | None = None) -> float:
    """Bad input (``conformance.bad_input``: hyperparameters outside the domain, non-finite
    gradients) on the subject and on torch.optim's class from the same state. Where the
    reference raises (at construction or at a step), the subject must raise the same exception
    class with the same message; where it does not, the subject must propagate like it: same
    NaN positions, same infinities with the same signs in params and state (``bitwise``
    contract: every element bit for bit, within ``entry.torch_ulp``; ``ulp`` contract: finite
    elements are not judged). A step the subject refuses changes no param and no state, bit for
    bit, unless torch's refused step changes them too: then the subject must end where torch
    ends (torch 2.13 raises "value cannot be converted to type float without overflow" for a
    hyperparameter such as lr=1e300 on float32 params *after* it has counted the step and
    updated some state; a subject that leaves everything unchanged passes too). A bitwise
    subject compared with another torch path than its own is not judged on which inputs it
    refuses; the ``ulp`` contract's reference is the for-loop path, and there any difference
    counts, except for a fused subject (torch's fused path refuses other inputs).
    ``defaults``: constructor arguments of both optimizers (a bad hyperparameter passed where
    torch's constructor validates it)."""
    import dataclasses

    from conformance import bad_input

    defaults = dict(defaults or {})
    reference = torch_reference(subject)
    ref_foreach = subject.reference_foreach(case)
    path = "foreach" if ref_foreach else "for-loop"
    built_with = f", both constructed with {defaults}" if defaults else ""
    ctx = _BadInputContext(
        "errors",
        subject,
        case,
        f"torch.optim.{subject.entry.torch_name} ({path} path){built_with}",
        defaults=defaults,
    )
    shown = bad_input.case_as_source(case)
    ctx.runs = (
        repro.run_of(subject, case.foreach, shown),
        repro.run_of(reference, ref_foreach, shown),
    )
    for r in ctx.runs:
        r["kwargs"].update(bad_input.as_source(defaults))
    own_foreach = case.foreach if subject.takes_foreach else subject.kwargs.get("foreach")
    # A fused subject runs another path than its for-loop reference, and torch's own fused
    # path refuses other inputs than its for-loop path (finding 4): which inputs it refuses is
    # not judged here (tests/test_impl_fused.py pins impl's to torch's fused path); how it
    # propagates NaN and infinity where both accept still is.
    judged = not subject.kwargs.get("fused") and (
        not subject.bitwise or _same_path(own_foreach, ref_foreach)
    )
    bound = subject.entry.torch_ulp.get(case.dtype, 0) if subject.bitwise else None
    # a NaN hyperparameter is never == itself: both sides hold the case's value, or raised
    ignore = subject.own_flags
    pa, pe = case.make_params(), case.make_params()

    def build(side, params, foreach):  # fresh tensors for tensor hyperparameters, per side
        side = dataclasses.replace(side, kwargs={**side.kwargs, **bad_input.materialize(defaults)})
        return side.build(bad_input.materialize_case(case), params, foreach=foreach)

    worst = 0.0
    try:
        oa, err_a = _attempt(lambda: build(subject, pa, case.foreach))
        oe, err_e = _attempt(lambda: build(reference, pe, ref_foreach))
        _same_error(ctx, "construction", err_a, err_e, judged)
        worst = _compare_bad(ctx, -1, pa, pe, oa, oe, bound, ignore)
        for t in range(case.steps):
            before, before_e = _snapshot(pa, oa), _snapshot(pe, oe)
            _, err_a = _attempt(lambda t=t: case.step(oa, pa, t))
            _, err_e = _attempt(lambda t=t: case.step(oe, pe, t))
            try:
                _same_error(ctx, f"step {t + 1}", err_a, err_e, judged)
            except _Stop:
                change = _change(before, pa, oa)
                if change is not None and _change(before_e, pe, oe) is None:
                    where, what = change
                    ctx.fail(
                        f"step {t + 1} (refused), {where}",
                        f"{what} by a step that raised {err_a!r} "
                        "(the reference's refused step changed nothing)",
                    )
                if change is not None:  # torch's own refused step changed state too: no more
                    _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore)
                raise
            worst = max(worst, _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore))
    except _Stop:
        pass
    return worst


CHECKS = {
    "torch": matches_torch,
    "spec": matches_spec,
    "spec_trajectory": trajectory_matches_spec,
    "maximize": maximize_is_minimizing_negation,
    "complex_as_real": complex_is_real_pair,
    "state_dict_roundtrip": state_dict_roundtrip,
    "grad_untouched": grad_untouched,
    "deterministic": deterministic,
    "nesterov_lookahead": nesterov_lookahead,
    "memory_safety": memory_safety,
    "errors": errors_like_reference,
    "sparse_rows": sparse_rows,
}

# the kinds for optimizers that are not elementwise (they build on the helpers above)
from conformance import structured  # noqa: E402

CHECKS.update(
    {
        "factored_moments": structured.factored_moments,
        "singular_values": structured.singular_values,
        "scale_invariance": structured.scale_invariance,
        "two_loop": structured.two_loop,
        "wolfe": structured.wolfe,
        "convergence": structured.convergence,
    }
)

# on DTensor params of a gloo mesh, in a pool of rank processes
from conformance import distributed  # noqa: E402

CHECKS["distributed"] = distributed.sharded_matches_torch
