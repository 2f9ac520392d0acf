"""Properties that hold whatever the numbers: maximize, complex as its real pair, save/load,
gradients untouched, determinism, and Nesterov's look-ahead definition."""

from __future__ import annotations

import copy

import numpy as np
import torch
from hypothesis import reject
from torch import Tensor

import specs
from conformance.bounds import torch_order as bounds
from conformance.core import repro
from conformance.core.case import Case, P, real_dtype, to_numpy, to_tensor
from conformance.core.judge import (
    ConformanceError,
    Context,
    assert_scaled,
    assert_ulp,
    explained,
)
from conformance.core.running import compare_runs, compare_states, run, set_grads


@explained
def maximize_is_minimizing_negation(subject, case: Case) -> float:
    """maximize=True on gradients g is bitwise minimize on -g (params and state, every step).

    Where torch's foreach Adagrad rounds lr into a half dtype on the maximize side only
    (``entry.maximize_rounds_lr``, docs/torch-findings.md#finding-6), the ``bitwise`` subject
    (torch's op sequence on that path) is compared with minimizing at that rounded lr. A ``ulp``
    subject is compared with the exact negation, and may instead match torch's quirk: a
    textbook class that takes a ``foreach`` argument need not copy it, and a class that copies
    torch's foreach path has it; a wrong maximize matches neither."""
    entry = subject.entry
    ctx = Context("maximize", subject, case, "the same optimizer minimizing -f")
    up = case.replace(groups=[{**g, "maximize": True} for g in case.groups])
    negated = [[None if g is None else -g for g in gs] for gs in case.grads]
    exact = case.replace(groups=[{**g, "maximize": False} for g in case.groups], grads=negated)
    quirk = _rounded_lr_groups(subject, case)
    bound = entry.maximize_ulp.get(case.dtype, 0)

    def against(down, ignore, ctx=ctx):
        return compare_runs(
            ctx, case, (subject, case.foreach, up), (subject, case.foreach, down), bound, ignore
        )

    if subject.bitwise or quirk is None:
        if quirk is not None:
            return against(case.replace(groups=quirk, grads=negated), {"maximize", "lr"})
        return against(exact, {"maximize"})
    try:
        return against(exact, {"maximize"})
    except ConformanceError as error:
        quirk_ctx = Context(
            "maximize", subject, case, "the same optimizer minimizing -f at lr rounded (finding 6)"
        )
        try:
            return against(case.replace(groups=quirk, grads=negated), {"maximize", "lr"}, quirk_ctx)
        except ConformanceError:
            raise error from None


def _rounded_lr_groups(subject, case: Case) -> list | None:
    """The minimizing groups at lr rounded into the dtype where ``entry.maximize_rounds_lr``
    says the subject's path rounds it on the maximize side only (torch's foreach Adagrad in
    float16/bfloat16), else None. With lr_decay (or a tensor lr) the maximize side rounds each
    step's clr, which no minimizing group reproduces: the example is rejected under either
    contract (under ulp, a class that copies torch's foreach path matches neither side there:
    the 2026-12-08 mutation baseline, impl's Adagrad 2 ULP off the exact negation in bfloat16)."""
    groups, rounds = [], False
    for g in case.groups:
        g = {**g, "maximize": False}
        if subject.entry.maximize_rounds_lr(
            g, case.torch_dtype, subject.path(case.foreach) == "foreach"
        ):
            if g.get("lr_decay", 0) != 0 or case.tensor_lr:
                reject()
            g["lr"] = float(torch.tensor(g["lr"], dtype=torch.float64).to(case.torch_dtype))
            rounds = True
        groups.append(g)
    return groups if rounds else None


@explained
def complex_is_real_pair(subject, case: Case) -> float:
    """A complex param behaves like its view_as_real pair: bitwise where both paths run the same
    ops; where they round differently (``entry.complex_ulp`` set), one step within the bound
    derived from both paths' rounding counts (``torch_order.complex_pair``)."""
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
    # paths that round differently are compared one step at a time: over several steps the two
    # runs start each step from different values, and no one-step count bounds that drift
    steps = 1 if entry.complex_ulp else case.steps
    for t in range(steps):
        grads = real.make_grads(t)
        set_grads(pc, case.make_grads(t))
        set_grads(pr, grads)
        oc.step()
        orr.step()
        for i, (x, y) in enumerate(zip(pc, pr, strict=True)):
            outputs = {"param": (x, y)}
            outputs.update((key, (v, orr.state[y][key])) for key, v in oc.state.get(x, {}).items())
            allowed = (
                _complex_pair_allowances(entry, orr, case, i, y, grads[i], outputs)
                if entry.complex_ulp
                else None
            )
            for key, (v, w) in outputs.items():
                what = f"step {t + 1}, " + (
                    f"param {i}" if key == "param" else f"state[{i}][{key!r}]"
                )
                v = torch.view_as_real(v) if v.is_complex() else v
                if allowed is None or key == "step":
                    worst = max(worst, assert_ulp(ctx, what, v, w, 0))
                    continue
                ref = (
                    case.params[i].values if key == "param" else case.state.get(i, {}).get(key, 0.0)
                )
                w = assert_scaled(
                    ctx,
                    what,
                    to_numpy(v),
                    to_numpy(w),
                    ref,
                    real_dtype(case.torch_dtype),
                    allowed[key],
                )
                worst = max(worst, w)
    return worst


def _complex_pair_allowances(entry, opt, case: Case, i: int, param, grad, outputs) -> dict:
    """The derived per-element allowances (ULPs at scale) of param ``i``'s first step: the rule's
    counts for the complex path and for the real pair, from the step's inputs and the real
    pair's outputs. A param without a gradient does not move on either path: 0."""
    if grad is None:
        return dict.fromkeys(outputs, 0.0)
    group = next(g for g in opt.param_groups if any(p is param for p in g["params"]))
    before = {"param": case.params[i].values, "grad": to_numpy(grad), **case.state.get(i, {})}
    real_after = {key: to_numpy(w) for key, (_, w) in outputs.items() if key != "step"}
    return bounds.complex_pair(
        entry.spec_bound, group, before, real_after, real_dtype(case.torch_dtype)
    )


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
