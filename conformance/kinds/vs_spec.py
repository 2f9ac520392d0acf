"""The ``spec``, ``spec_trajectory`` and ``sparse_rows`` checks: the subject's steps against the
SymPy spec's exact value, correctly rounded into the dtype, within the entry's derived bound."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import specs
from conformance.core import repro
from conformance.core.case import Case, Sparse, real_dtype, to_numpy
from conformance.core.judge import Context, explained
from conformance.core.running import compare_runs, set_grads
from conformance.kinds.spec_step import (
    assert_untouched_kept,
    judge_step,
    spec_state,
    untouched_by,
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
        if case.skipped(0):
            assert_skipped(ctx, spec_hyper, f"param {i} (found_inf)", inputs, actual)
            continue
        untouched = untouched_by(case, 0, i)
        w = judge_step(
            ctx, subject, group, spec_hyper, dtype, f"param {i}", inputs, actual, untouched
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
        if case.skipped(t):
            assert_skipped(ctx, spec_hyper, f"{where} (found_inf)", inputs, actual)
            continue
        untouched = untouched_by(case, t, i)
        dtype = real_dtype(case.torch_dtype)
        w = judge_step(ctx, subject, group, spec_hyper, dtype, where, inputs, actual, untouched)
        worst = max(worst, w)
    return worst


def assert_skipped(ctx, spec_hyper, where: str, inputs: dict, actual: dict) -> None:
    """A step GradScaler skips (``found_inf`` = 1) changes nothing: the param and every state
    it had bit for bit (the step count too: torch's fused path adds 1 and subtracts found_inf);
    a state it creates holds the spec's fresh value (step 0, zero moments), and a lazy one (the
    spec sets it on the first real step: SGD's momentum buffer) is not created
    (docs/torch-findings.md#finding-26)."""
    spec, hyper = spec_hyper
    fresh = {v.name: v.initial for v in spec.state}
    hyper_values = {h.symbol: float(hyper.get(h.name, h.default)) for h in spec.hypers}
    for key, after in actual.items():
        before = inputs.get(key)
        if before is None and fresh.get(key) is None:
            ctx.fail(
                f"{where} state {key!r}", "created by a skipped step (the spec sets it on a step)"
            )
        if before is None:
            before = 0.0 if key == "step" else float(fresh[key].xreplace(hyper_values))
        after = np.asarray(after, np.float64)
        before = np.broadcast_to(np.asarray(before, np.float64), after.shape)
        kept = (after == before) & (np.signbit(after) == np.signbit(before))
        moved = ~(kept | np.isnan(after) & np.isnan(before))
        if moved.any():
            idx = tuple(int(k) for k in np.argwhere(moved)[0])
            ctx.fail(
                f"{where} {key}",
                f"element {idx} changed on a skipped step: {before[idx]!r} -> {after[idx]!r}",
            )


def _steps_with_inputs(subject, case: Case):
    """Run the subject on the case and yield, after every step and for every param,
    ``(t, i, group, (spec, hyper), inputs, actual)``: the step's inputs ("param", "grad" (None:
    no gradient) and the starting state, as float64 arrays) and its outputs."""
    params = case.make_params()
    opt = subject.build(case, params, foreach=case.foreach)
    for t in range(case.steps):
        before = [to_numpy(p) for p in params]
        state_before = [spec_state(opt.state[p]) if p in opt.state else {} for p in params]
        grads = case.make_grads(t)
        # read before stepping: a subject that writes into p.grad is judged on what it was given
        given = [None if g is None else case.unscaled(to_numpy(g)) for g in grads]
        set_grads(params, grads)
        case.set_grad_scaling(opt, t)  # GradScaler's inputs, where the case draws them
        opt.step()
        for group in opt.param_groups:
            spec_hyper = specs.for_group(subject.entry.torch_name, group)
            for p in group["params"]:
                i = next(j for j, q in enumerate(params) if q is p)
                inputs = {"param": before[i], "grad": given[i], **state_before[i]}
                actual = {"param": to_numpy(p), **spec_state(opt.state.get(p, {}))}
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
        untouched = None if inputs["grad"] is None else untouched_by(case, t, i)
        for key, value in actual.items():
            if key != "step" and untouched is not None:
                ref = inputs.get(key, 0.0)  # a fresh state starts at zeros
                assert_untouched_kept(
                    ctx, f"step {t + 1}, param {i} {key}", value, ref, None, untouched
                )
    return worst
