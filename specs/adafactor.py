"""Adafactor (torch.optim.Adafactor; Shazeer & Stern 2018), torch 2.13's form, as SymPy
statements over a whole tensor.

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

import mpmath
import numpy as np
import sympy

T, C, LR, EPS1, EPS2, D, WD = sympy.symbols("t c lr eps1 eps2 d wd", positive=True)
HYPERS = (T, C, LR, EPS1, EPS2, D, WD)


def ema(old: sympy.Expr, new: sympy.Expr, weight: sympy.Expr) -> sympy.Expr:
    return (1 - weight) * old + weight * new


def factored(g, rows, cols, w) -> tuple[dict, dict, dict]:
    """One (m, n) slice: the new row and column factors and the second-moment estimate."""
    m, n = g.shape
    new_rows = {i: ema(rows[i], sum(g[i, j] ** 2 for j in range(n)) / n, w) for i in range(m)}
    new_cols = {j: ema(cols[j], sum(g[i, j] ** 2 for i in range(m)) / m, w) for j in range(n)}
    mean_row = sympy.Max(sum(new_rows.values()) / m, EPS1)
    estimate = {(i, j): new_rows[i] * new_cols[j] / mean_row for i in range(m) for j in range(n)}
    return new_rows, new_cols, estimate


def slice_statement(m: int, n: int) -> tuple[list, dict[str, list]]:
    """One (m, n) slice of a >= 2-d param: (input symbols g, R, C, t, c, eps1; outputs R', C'
    and the update direction U = g / sqrt(max(V, eps1²)), in C order)."""
    g = sympy.Matrix(m, n, sympy.symbols(f"g:{m * n}", real=True))
    rows = sympy.symbols(f"r:{m}", nonnegative=True)
    cols = sympy.symbols(f"k:{n}", nonnegative=True)
    new_rows, new_cols, estimate = factored(g, dict(enumerate(rows)), dict(enumerate(cols)), T**C)
    update = [
        g[i, j] / sympy.sqrt(sympy.Max(estimate[i, j], EPS1**2)) for i in range(m) for j in range(n)
    ]
    outputs = {
        "row_var": [new_rows[i] for i in range(m)],
        "col_var": [new_cols[j] for j in range(n)],
        "update": update,
    }
    return [*g, *rows, *cols, T, C, EPS1], outputs


def vector_statement() -> tuple[list, dict[str, list]]:
    """One element of a 0-d or 1-d param: v' = EMA of g², U = g / sqrt(max(v', eps1²))."""
    g, v = sympy.Symbol("g", real=True), sympy.Symbol("v", nonnegative=True)
    new = ema(v, g**2, T**C)
    return [g, v, T, C, EPS1], {
        "variance": [new],
        "update": [g / sympy.sqrt(sympy.Max(new, EPS1**2))],
    }


def param_statement(size: int) -> tuple[list, sympy.Expr]:
    """The new param from the old, the update U and the hyperparameters: the relative step
    alpha = max(eps2, RMS(p)) min(lr, 1/sqrt(t)), clipped by max(1, RMS(U)/d), after the
    decoupled weight decay. Symbols: (rms_p, rms_u, p, u, t, lr, eps2, d, wd)."""
    rms_p, rms_u, p, u = sympy.symbols("rms_p rms_u p u", real=True)
    alpha = sympy.Max(EPS2, rms_p) * sympy.Min(LR, 1 / sympy.sqrt(T))
    new = p * (1 - LR * WD) - alpha / sympy.Max(1, rms_u / D) * u
    return [rms_p, rms_u, p, u, T, LR, EPS2, D, WD], new


@functools.cache
def _lambdified(kind: str, m: int = 0, n: int = 0):
    symbols, outputs = {"slice": lambda: slice_statement(m, n), "vector": vector_statement}[kind]()
    names = list(outputs)
    flat = [e for name in names for e in outputs[name]]
    return names, [len(outputs[k]) for k in names], sympy.lambdify(symbols, flat, modules="mpmath")


@functools.cache
def _param_function():
    symbols, expr = param_statement(0)
    return sympy.lambdify(symbols, expr, modules="mpmath")


def _rms(values) -> mpmath.mpf:
    values = list(values)
    return mpmath.sqrt(mpmath.fsum(v * v for v in values) / len(values))


def exact_step(param, grad, state: dict, hyper: dict, step: int, digits: int = 60) -> dict:
    """The statement evaluated at ``digits`` significant digits, as float64 arrays: ``param``,
    ``update`` and the new state (``row_var`` of shape (..., m, 1), ``col_var`` (..., 1, n),
    or ``variance``). ``hyper``: torch's group keys, with ``eps1`` resolved (never None).
    Leading dims are a batch of (m, n) slices; only RMS(p) and RMS(U) couple them."""
    shape = tuple(np.shape(param))
    mp = lambda x: mpmath.mpf(float(x))  # noqa: E731
    eps1, eps2 = hyper["eps"]
    with mpmath.workdps(digits):
        t, c, e1 = mp(step), mp(hyper["beta2_decay"]), mp(eps1)
        g = np.asarray(grad, np.float64)
        result: dict[str, list] = {}
        if len(shape) >= 2:
            m, n = shape[-2:]
            names, sizes, function = _lambdified("slice", m, n)
            rows = np.asarray(state["row_var"], np.float64).reshape(-1, m)
            cols = np.asarray(state["col_var"], np.float64).reshape(-1, n)
            for gs, rs, cs in zip(g.reshape(-1, m * n), rows, cols, strict=True):
                out = function(*map(mp, gs), *map(mp, rs), *map(mp, cs), t, c, e1)
                k = 0
                for name, size in zip(names, sizes, strict=True):
                    result.setdefault(name, []).extend(out[k : k + size])
                    k += size
        else:
            names, sizes, function = _lambdified("vector")
            variance = np.asarray(state["variance"], np.float64).reshape(-1)
            for gi, vi in zip(g.reshape(-1), variance, strict=True):
                new, update = function(mp(gi), mp(vi), t, c, e1)
                result.setdefault("variance", []).append(new)
                result.setdefault("update", []).append(update)
        p = [mp(x) for x in np.ravel(param)]
        rms_p, rms_u = _rms(p), _rms(result["update"])
        new_param = _param_function()
        hyper_values = [t, mp(hyper["lr"]), mp(eps2), mp(hyper["d"]), mp(hyper["weight_decay"])]
        result["param"] = [
            new_param(rms_p, rms_u, pi, u, *hyper_values)
            for pi, u in zip(p, result["update"], strict=True)
        ]
        shapes = {
            "param": shape,
            "update": shape,
            "variance": shape,
            "row_var": (*shape[:-1], 1),
            "col_var": (*shape[:-2], 1, shape[-1]) if len(shape) >= 2 else (),
        }
        return {k: np.array([float(x) for x in v]).reshape(shapes[k]) for k, v in result.items()}
