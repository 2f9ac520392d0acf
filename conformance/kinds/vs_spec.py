"""The ``spec``, ``spec_trajectory`` and ``sparse_rows`` checks: the subject's steps against the
SymPy spec's exact value, correctly rounded into the dtype, within the entry's derived bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import specs
from conformance.core import repro
from conformance.core.case import Case, Sparse, real_dtype, to_numpy
from conformance.core.judge import Context, assert_scaled, explained
from conformance.core.running import compare_runs, set_grads


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
    theorem along a whole trajectory, where a drift bound against an iterated float64 oracle
    could not be derived (regressions.py: the Adam trajectory)."""
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
