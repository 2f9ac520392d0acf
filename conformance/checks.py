"""The checks, as plain functions of (registry entry, case).

Each returns the largest ULP distance it saw and raises ``ConformanceError`` (an
``AssertionError``) whose message names the optimizer, hyperparameters, dtype, device, tensor,
element, expected and actual values, the ULP distance, and a snippet that replays the case
without Hypothesis. The oracles are torch.optim and the specs; nothing here re-implements an
optimizer.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import reject
from torch import Tensor

from conformance.case import Case, P, real_dtype, to_numpy, to_tensor
from conformance.ulp import max_or_zero, scaled_ulp_error, ulp_distance


class ConformanceError(AssertionError):
    pass


@dataclass
class Context:
    """What a failure message needs to explain itself."""

    check: str
    entry: object
    case: Case
    reference: str  # what "expected" is

    def fail(self, what: str, detail: str) -> None:
        c = self.case
        groups = [{k: v for k, v in g.items() if k != "params"} for g in c.groups]
        raise ConformanceError(
            f"{self.check}: {self.entry.name} ({self.entry.torch_name}) disagrees with "
            f"{self.reference}\n"
            f"  dtype={c.dtype} device={c.device} foreach={c.foreach} "
            f"torch_foreach={c.torch_foreach} tensor_lr={c.tensor_lr}\n"
            f"  hyperparameters per group: {groups}\n"
            f"  at {what}: {detail}\n"
            f"Reproduce without Hypothesis:\n{snippet(self)}"
        )


def snippet(ctx: Context) -> str:
    return (
        "    import numpy as np\n"
        "    from conformance import checks, registry\n"
        "    from conformance.case import Case, P\n"
        f"    case = {ctx.case!r}\n".replace("\n     ", "\n         ")
        + f"    checks.CHECKS[{ctx.check!r}](registry.BY_NAME[{ctx.entry.name!r}], case)"
    )


def _element(t: Tensor, flat_index: int):
    if t.dim() == 0:
        return ()
    return tuple(int(i) for i in np.unravel_index(flat_index, tuple(t.shape)))


def assert_ulp(ctx: Context, what: str, actual: Tensor, expected: Tensor, bound: float) -> float:
    """ULP distance between two tensors of the same dtype, shape and device; raise above bound."""
    for attr in ("dtype", "shape", "device"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
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


def assert_scaled(ctx, what, actual: np.ndarray, exact: np.ndarray, ref: np.ndarray, dtype, bound):
    """Error of ``actual`` vs the correctly rounded ``exact`` in ULPs at scale (see ulp.py)."""
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    ref = np.broadcast_to(np.asarray(ref, np.float64), exact.shape)
    if actual.shape != exact.shape:
        ctx.fail(what, f"shape {actual.shape} != expected {exact.shape}")
    err = scaled_ulp_error(*(torch.from_numpy(np.array(x)) for x in (actual, exact, ref)), dtype)
    worst = max_or_zero(err)
    if worst > bound:
        flat = int(err.reshape(-1).argmax())
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


def run(cls, case: Case, *, foreach=None, steps=None, on_step=None):
    """Build ``cls`` on fresh params with the case's state and take ``steps`` steps."""
    params = case.make_params()
    opt = case.build(cls, params, foreach=foreach)
    for t in range(case.steps if steps is None else steps):
        set_grads(params, case.make_grads(t))
        opt.step()
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
            va = sa[key]
            if isinstance(ve, Tensor) and isinstance(va, Tensor):
                worst = max(worst, assert_ulp(ctx, f"{at}, state[{i}][{key!r}]", va, ve, bound))
            elif not (type(va) is type(ve) and va == ve):
                ctx.fail(f"{at}, state[{i}][{key!r}]", f"{va!r} != expected {ve!r}")
    return worst


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
        or (str(err_a) != str(err_e))
    ):
        ctx.fail(at, f"raised {err_a!r}, expected {err_e!r}")
    raise _Stop


class _Stop(Exception):
    """Both sides raised the same error: nothing more to compare."""


def compare_runs(ctx: Context, case: Case, actual, expected, bound=0.0, ignore=()) -> float:
    """Run two (cls, foreach, case) triples in lockstep; compare params and state every step."""
    (cls_a, fe_a, case_a), (cls_e, fe_e, case_e) = actual, expected
    same_path = _same_path(fe_a, fe_e)
    pa, pe = case_a.make_params(), case_e.make_params()
    try:
        oa, err_a = _attempt(lambda: case_a.build(cls_a, pa, foreach=fe_a))
        oe, err_e = _attempt(lambda: case_e.build(cls_e, pe, foreach=fe_e))
        _same_error(ctx, "construction", err_a, err_e, same_path)
        worst = compare_states(ctx, -1, oa, oe, bound, ignore)
        for t in range(case.steps):
            set_grads(pa, case_a.make_grads(t))
            set_grads(pe, case_e.make_grads(t))
            _, err_a = _attempt(oa.step)
            _, err_e = _attempt(oe.step)
            _same_error(ctx, f"step {t + 1}", err_a, err_e, same_path)
            for i, (x, y) in enumerate(zip(pa, pe, strict=True)):
                worst = max(worst, assert_ulp(ctx, f"step {t + 1}, param {i}", x, y, bound))
            worst = max(worst, compare_states(ctx, t, oa, oe, bound, ignore))
    except _Stop:
        return 0.0
    return worst


# -- vs torch.optim ----------------------------------------------------------------------------
def matches_torch(entry, case: Case) -> float:
    """impl and torch.optim from the same state on the same gradients: params and every state
    tensor after every step, bitwise unless ``entry.torch_ulp`` declares a bound."""
    ctx = Context("torch", entry, case, f"torch.optim.{entry.torch_name}")
    bound = entry.torch_ulp.get(case.dtype, 0)
    return compare_runs(
        ctx,
        case,
        (entry.impl, case.foreach, case),
        (entry.reference, case.torch_foreach, case),
        bound,
    )


# -- vs the spec -----------------------------------------------------------------------------------
def _spec_state(state: dict) -> dict:
    return {k: (float(v) if k == "step" else to_numpy(v)) for k, v in state.items()}


def matches_spec(entry, case: Case) -> float:
    """One step from the case's starting state vs the spec's exact value, correctly rounded into
    the dtype, within ``entry.spec_ulp`` (ULPs at scale). Params without a gradient must not
    move and their state must not change."""
    import specs

    ctx = Context("spec", entry, case, f"spec {entry.torch_name} (exact, correctly rounded)")
    dtype = real_dtype(case.torch_dtype)
    param_bound, state_bound = entry.spec_ulp[case.dtype]
    params = case.make_params()
    opt = case.build(entry.impl, params, foreach=case.foreach)
    before = [to_numpy(p) for p in params]
    state_before = [_spec_state(opt.state[p]) if p in opt.state else {} for p in params]
    grads = case.make_grads(0)
    # Read before stepping: an optimizer that writes into p.grad (torch's foreach Nesterov does)
    # must be judged on the gradient it was given; grad_untouched reports the write itself.
    given = [None if g is None else to_numpy(g) for g in grads]
    set_grads(params, grads)
    opt.step()
    worst = 0.0
    for group in opt.param_groups:
        spec, hyper = specs.for_group(entry.torch_name, group)
        for p in group["params"]:
            i = next(j for j, q in enumerate(params) if q is p)
            after = _spec_state(opt.state[p]) if p in opt.state else {}
            if grads[i] is None:
                unchanged = np.array_equal(to_numpy(p), before[i], equal_nan=True)
                if not unchanged or after.keys() != state_before[i].keys():
                    ctx.fail(f"param {i} (grad None)", "moved or its state changed")
                continue
            exact = spec.step_exact(before[i], given[i], state_before[i], hyper, dtype)
            slack = entry.spec_slack(group, state_before[i].get("step", 0.0), dtype)
            w = assert_scaled(
                ctx,
                f"param {i}",
                to_numpy(p),
                exact["param"],
                before[i],
                dtype,
                param_bound + slack,
            )
            worst = max(worst, w)
            for key, value in exact.items():
                if key == "param":
                    continue
                if key not in after:
                    ctx.fail(f"param {i} state", f"missing {key!r} (has {sorted(after)})")
                if key == "step":
                    if after["step"] != value:
                        ctx.fail(f"param {i} state 'step'", f"{after['step']} != {value}")
                    continue
                ref = state_before[i].get(key, 0.0)
                w = assert_scaled(
                    ctx, f"param {i} state {key!r}", after[key], value, ref, dtype, state_bound
                )
                worst = max(worst, w)
    return worst


def trajectory_matches_spec(entry, case: Case) -> float:
    """float64, several steps: impl vs ``spec.step_float64`` iterated on the same gradients,
    within ``entry.trajectory_ulp`` ULPs at scale (the float64 oracle rounds differently, and
    differences accumulate)."""
    import specs

    ctx = Context("spec_trajectory", entry, case, f"spec {entry.torch_name} (float64, iterated)")
    dtype = real_dtype(case.torch_dtype)
    params = case.make_params()
    opt = case.build(entry.impl, params, foreach=case.foreach)
    ref = [
        {"param": to_numpy(p), **(_spec_state(opt.state[p]) if p in opt.state else {})}
        for p in params
    ]
    worst = 0.0
    slack = [0.0] * len(params)
    for t in range(case.steps):
        grads = case.make_grads(t)
        set_grads(params, grads)
        opt.step()
        for group in opt.param_groups:
            spec, hyper = specs.for_group(entry.torch_name, group)
            for p in group["params"]:
                i = next(j for j, q in enumerate(params) if q is p)
                if grads[i] is None:
                    continue
                prev = ref[i]
                state = {k: v for k, v in prev.items() if k != "param"}
                ref[i] = spec.step_float64(prev["param"], to_numpy(grads[i]), state, hyper)
                # input-dependent slack (Adam's double bias corrections), accumulated per step
                slack[i] += entry.spec_slack(group, prev.get("step", 0.0), dtype)
                actual = {"param": to_numpy(p), **_spec_state(opt.state.get(p, {}))}
                for key, value in ref[i].items():
                    if key == "step":
                        continue
                    w = assert_scaled(
                        ctx,
                        f"step {t + 1}, param {i} {key}",
                        actual[key],
                        value,
                        prev.get(key, 0.0),
                        dtype,
                        entry.trajectory_ulp,
                    )
                    worst = max(worst, w)
    return worst


# -- invariants ----------------------------------------------------------------------------------
def maximize_is_minimizing_negation(entry, case: Case) -> float:
    """maximize=True on gradients g is bitwise minimize on -g (params and state, every step)."""
    ctx = Context("maximize", entry, case, "the same optimizer minimizing -f")
    up = case.replace(groups=[{**g, "maximize": True} for g in case.groups])
    down = case.replace(
        groups=[{**g, "maximize": False} for g in case.groups],
        grads=[[None if g is None else -g for g in gs] for gs in case.grads],
    )
    bound = entry.maximize_ulp.get(case.dtype, 0)
    return compare_runs(
        ctx,
        case,
        (entry.impl, case.foreach, up),
        (entry.impl, case.foreach, down),
        bound,
        {"maximize"},
    )


def complex_is_real_pair(entry, case: Case) -> float:
    """A complex param behaves like its view_as_real pair (within ``entry.complex_ulp``)."""
    ctx = Context("complex_as_real", entry, case, "the same optimizer on view_as_real params")
    real = case.replace(dtype=str(real_dtype(case.torch_dtype)).removeprefix("torch."))
    pc, pr = case.make_params(), real.make_params()
    oc = case.build(entry.impl, pc, foreach=case.foreach)
    orr = real.build(entry.impl, pr, foreach=case.foreach)
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


def state_dict_roundtrip(entry, case: Case) -> float:
    """Saving after step k and loading into a fresh optimizer (fresh param tensors) continues
    bitwise like the uninterrupted run."""
    ctx = Context("state_dict_roundtrip", entry, case, "the uninterrupted run")
    split = case.steps // 2
    straight, p_straight = run(entry.impl, case, foreach=case.foreach)
    first, p_first = run(entry.impl, case, foreach=case.foreach, steps=split)
    saved = copy.deepcopy(first.state_dict())
    del first
    # fresh tensors with the same memory layout: in float16/bfloat16 torch's kernels round
    # differently on contiguous and strided tensors (1 ULP seen), which is not what is tested here
    resumed_params = [
        to_tensor(to_numpy(p), case.torch_dtype, case.device, spec.layout)
        for p, spec in zip(p_first, case.params, strict=True)
    ]
    resumed = entry.impl(case.param_groups(resumed_params), foreach=case.foreach)
    try:
        resumed.load_state_dict(saved)
        for t in range(split, case.steps):
            set_grads(resumed_params, case.make_grads(t))
            resumed.step()
    except Exception as e:  # its own state_dict must load and run
        ctx.fail(f"resuming after step {split}", f"raised {e!r}")
    worst = 0.0
    for i, (x, y) in enumerate(zip(resumed_params, p_straight, strict=True)):
        worst = max(worst, assert_ulp(ctx, f"after step {case.steps}, param {i}", x, y, 0))
    return max(worst, compare_states(ctx, case.steps - 1, resumed, straight, 0))


def grad_untouched(entry, case: Case) -> float:
    """step() leaves every p.grad as it was: the same tensor object, the same bits."""
    ctx = Context("grad_untouched", entry, case, "the gradient before step()")

    params = case.make_params()
    opt = case.build(entry.impl, params, foreach=case.foreach)
    for t in range(case.steps):
        grads = case.make_grads(t)
        set_grads(params, grads)
        copies = [None if g is None else g.clone() for g in grads]
        opt.step()
        for i, (p, g, c) in enumerate(zip(params, grads, copies, strict=True)):
            if p.grad is not g:
                ctx.fail(f"step {t + 1}, param {i}", "p.grad was replaced")
            if g is not None:
                assert_ulp(ctx, f"step {t + 1}, grad of param {i}", g, c, 0)
    return 0.0


def deterministic(entry, case: Case) -> float:
    """Two runs on the same inputs are bitwise identical."""
    ctx = Context("deterministic", entry, case, "a second identical run")
    return compare_runs(
        ctx, case, (entry.impl, case.foreach, case), (entry.impl, case.foreach, case)
    )


def nesterov_lookahead(entry, problem, hyper: dict, steps: int) -> float:
    """impl's Nesterov SGD on a smooth loss tracks the look-ahead definition
    (specs.VARIANTS["nesterov:lookahead"], gradient at x - lr*mu*v): at every step
    ``p_t == x_t - lr*mu*buf_t`` within ``entry.trajectory_ulp`` ULPs at scale (float64)."""
    import specs

    x0, a, b, c = problem
    case = Case("float64", "cpu", [P(x0)], [{**hyper, "params": [0]}], {}, [[None]] * steps)
    ctx = Context("nesterov_lookahead", entry, case, "the look-ahead iteration (spec variant)")
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
    opt = entry.impl([p], **{k: v for k, v in hyper.items()})
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
}
