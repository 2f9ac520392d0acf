"""Muon's check kinds:

- ``singular_values``: the singular values of the orthogonalised update vs |p^(k)| of the
  normalised momentum's (``specs.muon``), within the bfloat16 bound of
  ``conformance.bounds.structured.muon_singular_values``; absolute singular-value error;
- ``scale_invariance``: gradients and momentum scaled by 2^k give bit-identical params.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import assume

from conformance.bounds import structured as sb
from conformance.bounds.rounding import gamma, unit_roundoff
from conformance.core import repro
from conformance.core.case import Case, real_dtype, to_numpy
from conformance.core.judge import Context, assert_ulp, assert_within, explained
from conformance.core.running import run
from specs import muon as muon_spec


def _momentum_inputs(case: Case, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Param ``i``'s first gradient and starting momentum buffer (zeros when fresh)."""
    grad = np.asarray(case.grads[0][i], np.float64)
    buffer = np.asarray(case.state.get(i, {}).get("momentum_buffer", np.zeros(grad.shape)))
    return grad, buffer


@explained
def singular_values(subject, case: Case) -> float:
    """One step from a zero param (weight decay off, lr 1) reads the orthogonalised update O
    back as -p'/lr_adj. Its singular values must match |p^(k)| of the exact normalised
    momentum's, one to one, within ``structured_bounds.muon_singular_values``. Measure: the
    largest singular-value error of the best matching.

    Then the elementwise tail: the case as drawn (its params, lr and weight decay) must end at
    p (1 - lr wd) + t per element, t the update the same run from zero params adds; within
    one rounding of each term and of the result, plus gradual underflow."""
    tail = _elementwise_tail(subject, case.replace(grads=case.grads[:1]))
    dtype = real_dtype(case.torch_dtype)
    groups = [{**g, "weight_decay": 0.0, "lr": 1.0} for g in case.groups]
    zero = [type(p)(np.zeros_like(p.values), p.layout) for p in case.params]
    case = case.replace(params=zero, groups=groups, grads=case.grads[:1], tensor_lr=False)
    ctx = Context("singular_values", subject, case, "specs.muon (singular values, float64)")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    _, params = run(subject, case, foreach=case.foreach)
    group_of = {i: g for g in case.groups for i in g["params"]}
    u_p, worst = unit_roundoff(dtype), 0.0
    for i, p in enumerate(params):
        if case.grads[0][i] is None:
            continue
        group = group_of[i]
        grad, buffer = _momentum_inputs(case, i)
        _, matrix = muon_spec.momentum_input(grad, buffer, group["momentum"], group["nesterov"])
        norm = float(np.linalg.norm(matrix))
        assume(norm > 2 * group["eps"] and norm < 2.0**60)  # the clamp and bf16's norm aside
        coefficients, steps = tuple(group["ns_coefficients"]), group["ns_steps"]
        # the momentum in the param's dtype: one lerp, two with Nesterov (absolute, per element)
        lerps = 2 if group["nesterov"] else 1
        err_b = sb.LERP * u_p * lerps * float(np.linalg.norm(np.abs(buffer) + 2 * np.abs(grad)))
        norm_rel = sb.U_BF16 + gamma(grad.size + 3, torch.float32) * sb.U_F32
        start = 2 * (sb.U_BF16 + (1 + sb.U_BF16) * err_b / norm) + norm_rel + sb.U_BF16
        end = u_p + 2 * sb.U_F32
        sigma = np.linalg.svd(matrix / norm, compute_uv=False)
        exact, bound = sb.muon_singular_values(coefficients, steps, sigma, grad.shape, start, end)
        lr = muon_spec.adjusted_lr(1.0, group["adjust_lr_fn"], grad.shape)
        update = -to_numpy(p) / lr
        actual = np.sort(np.linalg.svd(update, compute_uv=False))[::-1]
        ratio, errors = sb.best_matching(actual, exact, bound)
        if not ratio <= 1:
            ctx.fail(
                f"step 1, param {i}",
                f"singular values {actual.tolist()} of the update, expected "
                f"{exact.tolist()} within {bound.tolist()} ({steps} Newton-Schulz steps)",
            )
        worst = max(worst, float(errors.max(initial=0.0)))
    tail()
    return worst


def _elementwise_tail(subject, case: Case):
    """The check of Muon's tail, to run after the singular values (their failure first)."""
    dtype = real_dtype(case.torch_dtype)
    info = torch.finfo(dtype)
    zero = [type(p)(np.zeros_like(p.values), p.layout) for p in case.params]
    from_zero = case.replace(params=zero)
    ctx = Context("singular_values", subject, case, "p (1 - lr wd) + the update from zero params")
    ctx.runs = (
        repro.run_of(subject, case.foreach, case),
        repro.run_of(subject, case.foreach, from_zero),
    )

    def check():
        _, moved = run(subject, from_zero, foreach=case.foreach)
        _, actual = run(subject, case, foreach=case.foreach)
        lr_of = {i: (g["lr"], g["weight_decay"]) for g in case.groups for i in g["params"]}
        for i, (a, t) in enumerate(zip(actual, moved, strict=True)):
            before = np.asarray(case.params[i].values, np.float64)
            if case.grads[0][i] is None:
                expected, allowed = before, 0.0
            else:
                lr, wd = lr_of[i]
                decayed, step = before * (1 - lr * wd), to_numpy(t)
                expected = decayed + step
                # the decay's two roundings, the add's, and the update's own in the dtype
                terms = np.abs(expected) + 2 * np.abs(decayed) + np.abs(step)
                allowed = 1.5 * unit_roundoff(dtype) * terms + 2 * info.tiny * info.eps
            assert_within(ctx, f"step 1, param {i} (tail)", to_numpy(a), expected, allowed, 1.0)

    return check


@explained
def scale_invariance(subject, case: Case, k: int = 3) -> float:
    """Gradients and starting momentum scaled by 2^k: the params after every step are bit for
    bit those of the unscaled run (``specs.proofs.muon_scale_invariance``; 2^k scales every
    rounding exactly). Cases where a scaled value leaves the dtype's normal range, or a
    momentum's norm comes near eps, are outside the statement and not drawn."""
    dtype = real_dtype(case.torch_dtype)
    info = torch.finfo(dtype)
    factor = 2.0**k

    def scaled(a):
        return None if a is None else np.asarray(a) * factor

    values = [a for step in case.grads for a in step if a is not None]
    values += [s["momentum_buffer"] for s in case.state.values() if "momentum_buffer" in s]
    nonzero = np.abs(np.concatenate([np.ravel(a) for a in values] + [np.zeros(0)]))
    nonzero = nonzero[nonzero > 0]
    weights = [w for g in case.groups for w in (g["momentum"], 1 - g["momentum"]) if w > 0]
    # every product the momentum's lerps form stays normal, before and after scaling, and
    # bfloat16's sum of squares stays finite
    if nonzero.size:
        assume(nonzero.min() * min(weights) * min(1.0, factor) / 4 >= info.tiny)
        assume(nonzero.max() * max(1.0, factor) * 4 <= min(info.max, 2.0**60))
    # the norm clamp at eps stays out of play at every step, scaled or not
    group_of = {i: g for g in case.groups for i in g["params"]}
    buffers = {i: s.get("momentum_buffer") for i, s in case.state.items()}
    for step in case.grads:
        for i, g in enumerate(step):
            if g is None:
                continue
            group = group_of[i]
            old = buffers.get(i)
            buffers[i], matrix = muon_spec.momentum_input(
                np.asarray(g),
                np.zeros(np.shape(g)) if old is None else old,
                group["momentum"],
                group["nesterov"],
            )
            assume(np.linalg.norm(matrix) * min(1.0, factor) > 4 * group["eps"])
    state = {
        i: {key: scaled(v) if key == "momentum_buffer" else v for key, v in s.items()}
        for i, s in case.state.items()
    }
    big = case.replace(grads=[[scaled(a) for a in step] for step in case.grads], state=state)
    ctx = Context("scale_invariance", subject, big, f"the same run with gradients / 2^{k}")
    ctx.runs = (repro.run_of(subject, case.foreach, big), repro.run_of(subject, case.foreach, case))
    _, expected = run(subject, case, foreach=case.foreach)
    _, actual = run(subject, big, foreach=big.foreach)
    for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert_ulp(ctx, f"after step {case.steps}, param {i}", a, e, 0)
    return 0.0
