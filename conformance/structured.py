"""Check kinds for optimizers whose update is not elementwise: Adafactor's reductions, Muon's
Newton–Schulz iteration, LBFGS's two-loop recursion and line search.

Each is a plain function of (subject, case), like those in ``conformance.checks``, and returns
its own measure for the report (``report.MEASURES``):

- ``factored_moments`` (Adafactor): one step vs the SymPy statement (``specs.adafactor``) at 60
  digits; relative error in units of u at each element's scale, within the n·u-style bounds of
  ``structured_bounds.adafactor``;
- ``singular_values`` (Muon): the singular values of the orthogonalised update vs |p^(k)| of
  the normalised momentum's (``specs.muon``), within the bfloat16 bound of
  ``structured_bounds.muon_singular_values``; absolute singular-value error;
- ``scale_invariance`` (Muon): gradients and momentum scaled by 2^k give bit-identical params;
- ``two_loop`` (LBFGS): the stored direction vs −H g from the explicit BFGS product over the
  stored pairs; error in units of u at the recursion's magnitude;
- ``wolfe`` (LBFGS): every step the strong-Wolfe line search accepts satisfies both conditions
  in exact arithmetic, within the rounding of the values it compared; the worse residual in
  units of that allowance;
- ``convergence`` (LBFGS): on the drawn quadratic the run reaches its own gradient tolerance
  within max_iter, and then lies within ‖A⁻¹‖∞·(tolerance + gradient rounding) of A⁻¹b.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import assume

from conformance import repro
from conformance import structured_bounds as sb
from conformance.bounds import _gamma, _u
from conformance.case import Case, real_dtype, to_numpy
from conformance.checks import Context, assert_ulp, explained, run
from specs import adafactor as adafactor_spec
from specs import lbfgs as lbfgs_spec
from specs import muon as muon_spec


def _assert_within(ctx, what: str, actual, exact, allowed, scale) -> float:
    """``|actual - exact| <= allowed`` per element; returns max ``|actual - exact| / scale``."""
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, np.float64), exact.shape)
    scale = np.broadcast_to(np.asarray(scale, np.float64), exact.shape)
    if actual.shape != exact.shape:
        ctx.fail(what, f"shape {actual.shape} != expected {exact.shape}")
    err = np.abs(actual - exact)
    err = np.where(actual == exact, 0.0, err)
    over = np.where(np.isnan(err), np.inf, err - allowed)
    if over.size and over.max() > 0:
        k = int(np.argmax(over))
        idx = tuple(int(i) for i in np.unravel_index(k, exact.shape)) if exact.ndim else ()
        ctx.fail(
            what,
            f"element {idx}: expected {exact.reshape(-1)[k]!r} (exact), actual "
            f"{actual.reshape(-1)[k]!r}, error {err.reshape(-1)[k]:.3g} (allowed "
            f"{allowed.reshape(-1)[k]:.3g})",
        )
    ratio = np.where(err == 0, 0.0, err / np.where(scale > 0, scale, np.inf))
    return float(np.nan_to_num(ratio, nan=np.inf).max(initial=0.0))


# -- Adafactor ----------------------------------------------------------------------------------
def _resolved(group: dict, dtype: torch.dtype) -> dict:
    eps1, eps2 = group["eps"]
    return {**group, "eps": (torch.finfo(dtype).eps if eps1 is None else eps1, eps2)}


@explained
def factored_moments(subject, case: Case) -> float:
    """One step from the case's state vs ``specs.adafactor``'s exact statement: the row and
    column factors (or ``variance``) within their relative bounds, the param within the
    absolute allowance assembled from its terms (``structured_bounds``). Params without a
    gradient keep their value. Measure: error in units of u at scale."""
    ctx = Context("factored_moments", subject, case, "specs.adafactor (exact, 60 digits)")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    dtype = real_dtype(case.torch_dtype)
    u, info = _u(dtype), torch.finfo(dtype)
    case = case.replace(grads=case.grads[:1])
    opt, params = run(subject, case, foreach=case.foreach)
    worst = 0.0
    group_of = {i: g for g in case.groups for i in g["params"]}
    for i, p in enumerate(params):
        grad, before = case.grads[0][i], case.params[i].values
        state = {k: to_numpy(v) for k, v in opt.state[p].items() if k != "step"}
        if grad is None:
            if not np.array_equal(to_numpy(p), before):
                ctx.fail(f"param {i} (grad None)", "moved")
            continue
        group = _resolved(group_of[i], dtype)
        start = case.state.get(i, {})
        t = float(start.get("step", 0.0)) + 1
        zeros = {k: np.zeros(v.shape) for k, v in state.items()}
        old = {k: np.asarray(start.get(k, zeros[k]), np.float64) for k in zeros}
        exact = adafactor_spec.exact_step(before, np.asarray(grad), old, group, t)
        # the relative rounding model needs normal numbers: no output beyond the dtype's range,
        # and none of g², the new factors and their products below its smallest normal
        # (float16 draws reach there)
        assume(all(np.all(np.abs(exact[k]) < info.max / 4) for k in ("param", *state)))
        values = [np.square(np.asarray(grad, np.float64)), *(exact[k] for k in state)]
        if "row_var" in exact:
            values.append(exact["row_var"] * exact["col_var"])
        values = np.concatenate([np.ravel(v) for v in values])
        assume(np.all((values == 0) | (values >= 4 * info.tiny)))
        counts = sb.adafactor(tuple(np.shape(before)), dtype)
        for key, actual in state.items():
            e = exact[key]
            allowed = counts[key] * u * np.abs(e) + 0.5 * u * np.abs(e)  # + the store's rounding
            w = _assert_within(
                ctx, f"step 1, state[{i}][{key!r}]", actual, e, allowed, u * np.abs(e)
            )
            worst = max(worst, w)
        # + gradual underflow, half the smallest subnormal spacing per rounding: of the product
        # and the add, and of the scale -alpha/denom, which add_ casts into the dtype (float16:
        # a scale of 1.2e-6 is subnormal) and U multiplies
        allowed = sb.adafactor_param_allowance(exact, before, group, dtype, counts)
        allowed = allowed + info.tiny * info.eps * (1 + np.abs(exact["update"]) / 2)
        scale = u * np.maximum(np.maximum(np.abs(exact["param"]), np.abs(before)), info.tiny)
        w = _assert_within(ctx, f"step 1, param {i}", to_numpy(p), exact["param"], allowed, scale)
        worst = max(worst, w)
    return worst


# -- Muon ---------------------------------------------------------------------------------------
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
    u_p, worst = _u(dtype), 0.0
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
        norm_rel = sb.U_BF16 + _gamma(grad.size + 3, torch.float32) * sb.U_F32
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
                allowed = 1.5 * _u(dtype) * terms + 2 * info.tiny * info.eps
            _assert_within(ctx, f"step 1, param {i} (tail)", to_numpy(a), expected, allowed, 1.0)

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


# -- LBFGS --------------------------------------------------------------------------------------
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
        u = _u(dtype)
        allowed = _gamma(rounds, dtype) * u * magnitude
        w = _assert_within(
            ctx, f"step {t + 1}, direction d", to_numpy(state["d"]), exact, allowed, u * magnitude
        )
        worst = max(worst, w)
    return worst


@explained
def wolfe(subject, case: Case) -> float:
    """With ``line_search_fn="strong_wolfe"`` (one iteration per step(), tolerance_change 0 so
    the line search never gives up on a tiny bracket), every step that moved and whose line
    search returned within max_ls = 25 evaluations satisfies, in exact arithmetic,
    f(x + s) ≤ f(x) + c1 gᵀs and |∇f(x + s)ᵀs| ≤ c2 |gᵀs| for the step s taken, up to the
    rounding of the values the search compared (``structured_bounds.wolfe_allowance``).
    Measure: the worse residual over its allowance (negative: met with room to spare; in
    (0, 1]: met only within rounding)."""
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
    w = _assert_within(ctx, "after step 1, params vs A⁻¹b", x, x_star, allowed, allowed)
    return w
