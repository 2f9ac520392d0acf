"""LBFGS's check kinds:

- ``two_loop``: the stored direction vs −H g from the explicit BFGS product over the stored
  pairs; error in units of u at the recursion's magnitude;
- ``wolfe``: every step the strong-Wolfe line search accepts satisfies both conditions in exact
  arithmetic, within the rounding of the values it compared; the worse residual in units of
  that allowance. Steps where the search gave up (its budget, or its bracket tolerance) are
  not judged: it promises nothing there;
- ``convergence``: on the drawn quadratic the run reaches its own gradient tolerance within
  max_iter, and then lies within ‖A⁻¹‖∞·(tolerance + gradient rounding) of A⁻¹b.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import assume

from conformance.bounds import structured as sb
from conformance.bounds.rounding import gamma, unit_roundoff
from conformance.core import repro
from conformance.core.case import Case, to_numpy
from conformance.core.judge import Context, assert_within, explained
from specs import lbfgs as lbfgs_spec

# torch's LBFGS calls its line search without the group's ``tolerance_change``: the search keeps
# its own default and stops once its bracket is narrower than this, |t_hi - t_lo| max|d| <
# 1e-9, returning the low end whether or not it meets the conditions (torch-findings 30)
LINE_SEARCH_TOLERANCE = 1e-9


def _lbfgs_case(case: Case, **overrides) -> Case:
    return case.replace(groups=[{**g, **overrides} for g in case.groups])


def _flat(tensors) -> np.ndarray:
    return np.concatenate([to_numpy(t).reshape(-1) for t in tensors]) if tensors else np.zeros(0)


def _lbfgs_state(opt, params):
    return opt.state[params[0]]


@explained
def two_loop(subject, case: Case) -> float:
    """Each step() runs one iteration (max_iter = 1); afterwards the stored direction ``d`` is
    −H·``prev_flat_grad`` for H the BFGS product over the stored ``old_stps``, ``old_dirs``,
    ``ro`` from ``H_diag``·I (``specs.lbfgs``, 50 digits). Bound: the recursion's rounding,
    ``gamma_K`` times the same recursion run on magnitudes (``structured_bounds.two_loop``).
    Every stored pair also meets the curvature condition y·s > 1e-10."""
    case = _lbfgs_case(case, max_iter=1)
    dtype = case.torch_dtype
    ctx = Context("two_loop", subject, case, "−H g, H the explicit BFGS product (specs.lbfgs)")
    ctx.runs = (repro.run_of(subject, None, case),)
    params = case.make_params()
    opt = subject.build(case, params)
    worst = 0.0
    for t in range(case.steps):
        case.step(opt, params, t)
        state = _lbfgs_state(opt, params)
        if "d" not in state:  # converged before the first direction (a zero gradient)
            continue
        stps, dirs = (
            [to_numpy(s) for s in state["old_stps"]],
            [to_numpy(y) for y in state["old_dirs"]],
        )
        ro = [float(r) for r in state["ro"]]
        for k, (s, y) in enumerate(zip(stps, dirs, strict=True)):
            if not float(np.dot(s, y)) > lbfgs_spec.CURVATURE_MIN * (1 - 1e-6):
                ctx.fail(f"step {t + 1}, pair {k}", f"y·s = {float(np.dot(s, y))!r} <= 1e-10")
        g, h_diag = to_numpy(state["prev_flat_grad"]), float(state["H_diag"])
        exact = lbfgs_spec.direction_exact(g, stps, dirs, ro, h_diag)
        magnitude, rounds = sb.two_loop(g, stps, dirs, ro, h_diag)
        u = unit_roundoff(dtype)
        allowed = gamma(rounds, dtype) * u * magnitude
        w = assert_within(
            ctx, f"step {t + 1}, direction d", to_numpy(state["d"]), exact, allowed, u * magnitude
        )
        worst = max(worst, w)
    return worst


@explained
def wolfe(subject, case: Case) -> float:
    """With ``line_search_fn="strong_wolfe"`` (one iteration per step(); tolerance_change 0, so
    that LBFGS itself skips no tiny descent direction), every step that moved, whose line search
    returned within max_ls = 25 evaluations and cannot have stopped on its bracket tolerance
    (``_may_have_given_up``), satisfies, in exact arithmetic, f(x + s) ≤ f(x) + c1 gᵀs and
    |∇f(x + s)ᵀs| ≤ c2 |gᵀs| for the step s taken, up to the rounding of the values the search
    compared (``structured_bounds.wolfe_allowance``). The group's tolerance_change does not
    reach the search (``LINE_SEARCH_TOLERANCE``): a search that gives up returns its bracket's
    low end, which need not meet either condition, even rounded (regressions.py: a float32
    step whose own curvature test failed, 7.61e-8 > 0.9 * 7.65e-8). Measure: the worse
    residual over its allowance (negative: met with room to spare; in (0, 1]: met only within
    rounding)."""
    # max_eval bounds the line search's evaluations (max_eval - 1 per one-iteration step)
    case = _lbfgs_case(
        case, max_iter=1, max_eval=26, line_search_fn="strong_wolfe", tolerance_change=0.0
    )
    dtype = case.torch_dtype
    ctx = Context("wolfe", subject, case, "the strong Wolfe conditions (exact arithmetic)")
    ctx.runs = (repro.run_of(subject, None, case),)
    params = case.make_params()
    opt = subject.build(case, params)
    objective, worst = case.objective, -math.inf
    a = _block_diagonal(objective.hessians)
    b = np.concatenate(objective.offsets) if objective.offsets else np.zeros(0)
    for t in range(case.steps):
        x0 = _flat(params)
        calls: list = []
        case.step(opt, params, t, calls)
        x1, s = _flat(params), _flat(params) - x0
        if len(calls) - 1 >= 25 or not np.any(s):  # the search ran out, or nothing moved
            continue
        if _may_have_given_up(calls, x0, x1, dtype):
            continue
        g0, g1 = a @ x0 - b, a @ x1 - b
        f0, f1 = lbfgs_spec.loss(a, b, x0), lbfgs_spec.loss(a, b, x1)
        slope0, slope1 = float(g0 @ s), float(g1 @ s)
        armijo = float(f1 - f0) - lbfgs_spec.C1 * slope0
        curvature = abs(slope1) - lbfgs_spec.C2 * abs(slope0)
        allow_a, allow_c = sb.wolfe_allowance(a, b, x0, x1, dtype)
        for name, residual, allowed in (
            ("Armijo", armijo, allow_a),
            ("curvature", curvature, allow_c),
        ):
            if residual > allowed:
                ctx.fail(
                    f"step {t + 1}, {name} condition",
                    f"residual {residual:.6g} > allowed {allowed:.3g} (f(x) = {float(f0)!r}, "
                    f"f(x+s) = {float(f1)!r}, gᵀs = {slope0!r}, ∇f(x+s)ᵀs = {slope1!r})",
                )
            worst = max(worst, residual / allowed)
    return worst if worst > -math.inf else None  # no step judged: nothing to report


def _may_have_given_up(calls, x0, x1, dtype) -> bool:
    """Whether the search may have stopped on its bracket tolerance: then the accepted point
    x1 = fl(x0 + t_lo d) and the other end, a point it evaluated (or x0, for t = 0), have
    |t_hi - t_lo| |d_k| < τ in every element. Each point is x0 + t d with t cast into the dtype
    and one rounding of the add: within 2u(|x_k| + |x_k - x0_k|) of x0 + t d (to first order
    in u, x0 exact). So two of the calls' points, x1 among them, lie within τ + those roundings
    of each other; where no second one does, the search ended on its conditions."""
    u = unit_roundoff(dtype)
    near = 0
    for call in calls:
        x = _flat(call)
        slack = LINE_SEARCH_TOLERANCE + 2 * u * (
            np.abs(x) + np.abs(x - x0) + np.abs(x1) + np.abs(x1 - x0)
        )
        near += bool(np.all(np.abs(x - x1) <= slack))
    return near >= 2


def _block_diagonal(blocks) -> np.ndarray:
    n = sum(len(b) for b in blocks)
    out, k = np.zeros((n, n)), 0
    for block in blocks:
        m = len(block)
        out[k : k + m, k : k + m] = block
        k += m
    return out


@explained
def convergence(subject, case: Case) -> float:
    """One step() with lr = 1, max_iter = 100, strong Wolfe, tolerance_change = 0, and a gradient
    tolerance above the gradient's own rounding at the minimiser: the run must stop at its
    gradient tolerance (the closure's last gradient within it), and then every param lies
    within ‖A⁻¹‖∞·(tolerance + rounding) of A⁻¹b. Measure: max |x − x*| over that bound."""
    dtype = case.torch_dtype
    objective = case.objective
    a = _block_diagonal(objective.hessians)
    b = np.concatenate(objective.offsets) if objective.offsets else np.zeros(0)
    assume(len(b) > 0)
    x_star = np.linalg.solve(a, b)
    # a gradient tolerance the run can reach: above the gradient's own rounding, and above
    # the gradient at which a step's decrease |g|²/(2 λmax) drowns in the loss's rounding
    # (the line search compares losses)
    noise = sb.gradient_rounding(a, b, x_star, dtype)
    curvature = float(np.abs(a).sum(axis=1).max())  # >= λmax (Gershgorin)
    resolution = math.sqrt(2 * curvature * sb.loss_rounding(a, b, x_star, dtype))
    tolerance = max(case.groups[0]["tolerance_grad"], 8 * noise, 8 * resolution)
    case = _lbfgs_case(
        case,
        lr=1.0,  # lr < 1 shrinks every accepted step: linear convergence at rate 1 - lr
        max_iter=100,
        max_eval=125,
        line_search_fn="strong_wolfe",
        tolerance_change=0.0,
        tolerance_grad=tolerance,
    ).replace(grads=[[None] * len(case.params)])
    ctx = Context("convergence", subject, case, "the minimiser A⁻¹b within the tolerances")
    ctx.runs = (repro.run_of(subject, None, case),)
    params = case.make_params()
    opt = subject.build(case, params)
    calls: list = []
    case.step(opt, params, 0, calls)
    last_grad = _flat(objective.evaluate(params)[1])  # what LBFGS saw at the accepted point
    if not np.abs(last_grad).max(initial=0.0) <= tolerance:
        ctx.fail(
            "after step 1",
            f"stopped after {len(calls)} evaluations with max|g| = "
            f"{np.abs(last_grad).max()!r} > tolerance_grad {tolerance!r}",
        )
    x = _flat(params)
    inverse_norm = float(np.abs(np.linalg.inv(a)).sum(axis=1).max())
    allowed = inverse_norm * (tolerance + 2 * sb.gradient_rounding(a, b, x, dtype))
    w = assert_within(ctx, "after step 1, params vs A⁻¹b", x, x_star, allowed, allowed)
    return w
