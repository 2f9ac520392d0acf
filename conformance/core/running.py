"""Running a subject on a case, and comparing two runs step by step.

``run`` steps one subject; ``compare_runs`` steps two in lockstep and judges params, state and
errors after every step (``compare_states``). Where the reference raises, the subject must raise
the same exception class with the same message (``same_error``); then there is nothing more to
compare (``BothRaised``).
"""

from __future__ import annotations

import re

import torch
from hypothesis import reject
from torch import Tensor

from conformance.core import repro
from conformance.core.case import Case
from conformance.core.judge import BothRaised, Context, assert_ulp


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


def compare_states(
    ctx: Context, t: int, actual_opt, expected_opt, bound: float, ignore=()
) -> float:
    """Both optimizers' state_dicts: same layout, same group hyperparameters, state within bound."""
    a, e = actual_opt.state_dict(), expected_opt.state_dict()
    at = f"step {t + 1}" if t >= 0 else "start"
    worst = 0.0
    for k, (ga, ge) in enumerate(zip(a["param_groups"], e["param_groups"], strict=True)):
        # Under ``ulp`` a group's set of keys is torch's convention (capturable, differentiable,
        # fused, decoupled_weight_decay): a textbook class need not carry them. The values of
        # the keys both carry are still the case's hyperparameters, and are compared.
        if ctx.subject.bitwise and set(ga) != set(ge):
            ctx.fail(f"{at}, param_groups[{k}]", f"keys {sorted(ga)} != {sorted(ge)}")
        for key in set(ge) & set(ga) - {"foreach", *ignore}:  # the path is drawn per side
            va, ve = ga[key], ge[key]
            same = torch.equal(va, ve) if isinstance(ve, Tensor) else va == ve
            if not same:
                ctx.fail(f"{at}, param_groups[{k}][{key!r}]", f"{va!r} != {ve!r}")
    if ctx.subject.bitwise and set(a["state"]) != set(e["state"]):
        ctx.fail(f"{at}, state", f"params {sorted(a['state'])} != {sorted(e['state'])}")
    # Under ``ulp`` which params hold state, and under which keys, is torch's convention (a
    # textbook SGD may keep a zero momentum buffer at momentum 0): the spec checks judge the
    # state the spec names; here the values both sides keep are compared.
    for i, se in e["state"].items():
        sa = a["state"].get(i, {})
        if ctx.subject.bitwise and set(sa) != set(se):
            ctx.fail(f"{at}, state[{i}]", f"keys {sorted(sa)} != expected {sorted(se)}")
        for key, ve in se.items():
            if key not in sa:
                continue
            worst = max(worst, compare_value(ctx, f"{at}, state[{i}][{key!r}]", sa[key], ve, bound))
    return worst


def compare_value(ctx: Context, where: str, va, ve, bound: float) -> float:
    """A state value: a tensor within ``bound``, a list of them (LBFGS's history) element by
    element, anything else equal and of the same type. Under the ``ulp`` contract a state
    tensor's layout is torch's convention, not the spec's (torch keeps SGD's momentum buffer
    sparse after a sparse gradient; a textbook class keeps it dense): both compare as dense
    values, coalesced. The ``bitwise`` contract compares them as stored."""
    if isinstance(ve, Tensor) and isinstance(va, Tensor):
        if not ctx.subject.bitwise and (va.is_sparse or ve.is_sparse):
            va, ve = (x.coalesce().to_dense() if x.is_sparse else x for x in (va, ve))
        return assert_ulp(ctx, where, va, ve, bound)
    if isinstance(ve, list) and isinstance(va, list):
        if len(va) != len(ve):
            ctx.fail(where, f"{len(va)} entries != expected {len(ve)}")
        distances = [
            compare_value(ctx, f"{where}[{k}]", a, e, bound) for k, (a, e) in enumerate(zip(va, ve))
        ]
        return max(distances, default=0.0)
    if not (type(va) is type(ve) and (va == ve or (va != va and ve != ve))):
        ctx.fail(where, f"{va!r} != expected {ve!r}")
    return 0.0


def same_path(fe_a, fe_e) -> bool:
    return bool(fe_a) == bool(fe_e)  # on CPU foreach=None is the for-loop path


def attempt(fn):
    try:
        return fn(), None
    except Exception as e:  # an error torch raises must be raised the same way by impl
        return None, e


def same_error(ctx, at: str, err_a, err_e, same_path: bool) -> None:
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
    raise BothRaised


def _message(error: Exception) -> str:
    """The message, less what torch's argument parser says of the caller's own code: which
    Python sequence it keeps its tensors in ("got (list, ...)" vs "(tuple, ...)", and per
    argument "!list of [Tensor]!" vs "!tuple of (Tensor,)!": torch's foreach paths pass their
    grouped tensors as tuples) and whether the kernel that refused the argument was the
    in-place one ("_foreach_add_()" vs "_foreach_add()", seen by conformance-explore for a
    tensor weight_decay). The refused argument and the signatures it was checked against stay
    compared."""
    text = re.sub(r" - got \([^\n]*\), but expected", " - got (...), but expected", str(error))
    text = re.sub(r"!(?:list of \[[^\]!]*\]|tuple of \([^)!]*\))!", "!sequence of tensors!", text)
    return re.sub(r"\b(_foreach_\w+?)_?\(\) received", r"\1() received", text)


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
    judged = judge_errors and (judge_errors == "always" or sub_a.path(fe_a) == sub_e.path(fe_e))
    pa, pe = case_a.make_params(), case_e.make_params()
    try:
        oa, err_a = attempt(lambda: sub_a.build(case_a, pa, foreach=fe_a))
        oe, err_e = attempt(lambda: sub_e.build(case_e, pe, foreach=fe_e))
        same_error(ctx, "construction", err_a, err_e, judged)
        worst = compare_states(ctx, -1, oa, oe, bound, ignore)
        for t in range(case.steps):
            _, err_a = attempt(lambda t=t: case_a.step(oa, pa, t))
            _, err_e = attempt(lambda t=t: case_e.step(oe, pe, t))
            same_error(ctx, f"step {t + 1}", err_a, err_e, judged)
            for i, (x, y) in enumerate(zip(pa, pe, strict=True)):
                worst = max(worst, assert_ulp(ctx, f"step {t + 1}, param {i}", x, y, bound))
            worst = max(worst, compare_states(ctx, t, oa, oe, bound, ignore))
    except BothRaised:
        return 0.0
    return worst
