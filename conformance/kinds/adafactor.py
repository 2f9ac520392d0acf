"""Adafactor's check kind ``factored_moments``: one step vs the SymPy statement
(``specs.adafactor``) at 60 digits; relative error in units of u at each element's scale, within
the n·u-style bounds of ``conformance.bounds.structured.adafactor``."""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import assume

from conformance.bounds import structured as sb
from conformance.bounds.rounding import unit_roundoff
from conformance.core import repro
from conformance.core.case import Case, real_dtype, to_numpy
from conformance.core.judge import Context, assert_within, explained
from conformance.core.running import run
from specs import adafactor as adafactor_spec


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
    u, info = unit_roundoff(dtype), torch.finfo(dtype)
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
        # the a-priori bound exists where every count k has k u < 1 (gamma): a bfloat16 RMS
        # over a vector-sized param (hundreds of elements) is beyond it
        assume(all(math.isfinite(k) for k in counts.values()))
        for key, actual in state.items():
            e = exact[key]
            allowed = counts[key] * u * np.abs(e) + 0.5 * u * np.abs(e)  # + the store's rounding
            # the lerp's weight t**beta2_decay is one pow (2u) and its cast (u): its error moves
            # the result by up to 3u |new - old|, which is not small against |new| where the
            # lerp cancels (old 1, target 0, weight 0.9576: new 0.0424, 11.8 u of |new|)
            allowed = allowed + 3 * u * np.abs(e - old[key])
            w = assert_within(
                ctx, f"step 1, state[{i}][{key!r}]", actual, e, allowed, u * np.abs(e)
            )
            worst = max(worst, w)
        # + gradual underflow, half the smallest subnormal spacing per rounding: of the product
        # and the add, and of the scale -alpha/denom, which add_ casts into the dtype (float16:
        # a scale of 1.2e-6 is subnormal) and U multiplies
        allowed = sb.adafactor_param_allowance(exact, before, group, dtype, counts)
        allowed = allowed + info.tiny * info.eps * (1 + np.abs(exact["update"]) / 2)
        scale = u * np.maximum(np.maximum(np.abs(exact["param"]), np.abs(before)), info.tiny)
        w = assert_within(ctx, f"step 1, param {i}", to_numpy(p), exact["param"], allowed, scale)
        worst = max(worst, w)
    return worst
