"""Adafactor (torch 2.13's form) as SymPy statements over a whole tensor.

Not elementwise: a param of shape (..., m, n) keeps one row factor per row and one column factor
per column, each an exponential moving average of the row / column means of g²; the second
moment of element (i, j) is their product over the mean row factor. The step size is relative
to the param's RMS and the update is clipped by its own RMS. So the statement is built per
shape, over every element at once, and its numeric oracle evaluates it at high precision.

    w_t   = t^c                          (c = beta2_decay <= 0; w_1 = 1: no bias correction)
    R'_i  = (1 - w_t) R_i + w_t mean_j g_ij²         C'_j = (1 - w_t) C_j + w_t mean_i g_ij²
    V_ij  = R'_i C'_j / max(mean_i R'_i, eps1)       (vectors and 0-d: v' = EMA of g², V = v')
    U_ij  = g_ij / sqrt(max(V_ij, eps1²))
    rho_t = min(lr, 1/sqrt(t))                       alpha = max(eps2, RMS(p)) rho_t
    p'    = p (1 - lr wd) - alpha U / max(1, RMS(U)/d)

``eps1=None`` means the param dtype's machine epsilon (torch.finfo(dtype).eps).
"""

from __future__ import annotations

import functools
import itertools
import math

import mpmath
import numpy as np
import sympy

T, C, LR, EPS1, EPS2, D, WD = sympy.symbols("t c lr eps1 eps2 d wd", positive=True)
HYPERS = (T, C, LR, EPS1, EPS2, D, WD)


def ema(old: sympy.Expr, new: sympy.Expr, weight: sympy.Expr) -> sympy.Expr:
    return (1 - weight) * old + weight * new


def _rms(values) -> sympy.Expr:
    values = list(values)
    return sympy.sqrt(sum(v**2 for v in values) / len(values))


def factored(g, rows, cols, w) -> tuple[dict, dict, dict]:
    """One (m, n) slice: the new row and column factors and the second-moment estimate."""
    m, n = g.shape
    new_rows = {i: ema(rows[i], sum(g[i, j] ** 2 for j in range(n)) / n, w) for i in range(m)}
    new_cols = {j: ema(cols[j], sum(g[i, j] ** 2 for i in range(m)) / m, w) for j in range(n)}
    mean_row = sympy.Max(sum(new_rows.values()) / m, EPS1)
    estimate = {(i, j): new_rows[i] * new_cols[j] / mean_row for i in range(m) for j in range(n)}
    return new_rows, new_cols, estimate


@functools.cache
def statement(shape: tuple) -> tuple[list, dict[str, list]]:
    """(input symbols, {output: expressions in C order}) for one step on a param of ``shape``.

    Inputs: p, g (C order), then the state (``row_var``/``col_var`` for >= 2-d params, else
    ``variance``), then ``HYPERS``. The step t is the step *after* the increment."""
    size = math.prod(shape)
    p = sympy.symbols(f"p:{size}", real=True)
    g = sympy.symbols(f"g:{size}", real=True)
    w = T**C
    index = {ix: k for k, ix in enumerate(itertools.product(*(range(s) for s in shape)))}
    outputs: dict[str, list] = {}
    if len(shape) >= 2:
        batch, (m, n) = shape[:-2], shape[-2:]
        row_sym = sympy.symbols(f"r:{math.prod(batch) * m}", nonnegative=True)
        col_sym = sympy.symbols(f"k:{math.prod(batch) * n}", nonnegative=True)
        state = [*row_sym, *col_sym]
        estimate = [None] * size
        outputs["row_var"], outputs["col_var"] = [], []
        for b, lead in enumerate(itertools.product(*(range(s) for s in batch))):
            gm = sympy.Matrix(m, n, lambda i, j, lead=lead: g[index[(*lead, i, j)]])
            rows = {i: row_sym[b * m + i] for i in range(m)}
            cols = {j: col_sym[b * n + j] for j in range(n)}
            new_rows, new_cols, est = factored(gm, rows, cols, w)
            outputs["row_var"] += [new_rows[i] for i in range(m)]
            outputs["col_var"] += [new_cols[j] for j in range(n)]
            for (i, j), v in est.items():
                estimate[index[(*lead, i, j)]] = v
    else:
        var = sympy.symbols(f"v:{size}", nonnegative=True)
        state = list(var)
        outputs["variance"] = [ema(v, gi**2, w) for v, gi in zip(var, g, strict=True)]
        estimate = outputs["variance"]
    update = [gi / sympy.sqrt(sympy.Max(v, EPS1**2)) for gi, v in zip(g, estimate, strict=True)]
    alpha = sympy.Max(EPS2, _rms(p)) * sympy.Min(LR, 1 / sympy.sqrt(T))
    scale = alpha / sympy.Max(1, _rms(update) / D)
    outputs["param"] = [pi * (1 - LR * WD) - scale * u for pi, u in zip(p, update, strict=True)]
    outputs["update"] = update  # not stored by torch; the check recovers it where it can
    return [*p, *g, *state, *HYPERS], outputs


@functools.cache
def _oracle(shape: tuple):
    symbols, outputs = statement(shape)
    names = list(outputs)
    flat = [e for name in names for e in outputs[name]]
    function = sympy.lambdify(symbols, flat, modules="mpmath", cse=True)
    return names, [len(outputs[n]) for n in names], function


def exact_step(param, grad, state: dict, hyper: dict, step: int, digits: int = 60) -> dict:
    """The statement evaluated at ``digits`` significant digits, as float64 arrays: ``param``,
    ``update`` and the new state (``row_var`` of shape (..., m, 1), ``col_var`` (..., 1, n),
    or ``variance``). ``hyper``: torch's group keys, with ``eps1`` resolved (never None)."""
    shape = tuple(np.shape(param))
    names, sizes, function = _oracle(shape)
    if len(shape) >= 2:
        state_values = [*np.ravel(state["row_var"]), *np.ravel(state["col_var"])]
    else:
        state_values = list(np.ravel(state["variance"]))
    eps1, eps2 = hyper["eps"]
    hyper_values = [step, hyper["beta2_decay"], hyper["lr"], eps1, eps2, hyper["d"]]
    hyper_values.append(hyper["weight_decay"])
    inputs = [*np.ravel(param), *np.ravel(grad), *state_values, *hyper_values]
    with mpmath.workdps(digits):
        flat = function(*(mpmath.mpf(float(x)) for x in inputs))
    flat = [float(v) for v in flat]
    shapes = {
        "param": shape,
        "update": shape,
        "variance": shape,
        "row_var": (*shape[:-1], 1),
        "col_var": (*shape[:-2], 1, shape[-1]) if len(shape) >= 2 else (),
    }
    result, start = {}, 0
    for name, size in zip(names, sizes, strict=True):
        result[name] = np.array(flat[start : start + size]).reshape(shapes[name])
        start += size
    return result
