"""A per-element error bound derived from the spec's own equations, for any implementation that
evaluates them with correctly rounded operations (docs/bounds.md#automatic).

Method: a running error analysis in midpoint-radius form, evaluated at the drawn point. Walking
each update equation's SymPy tree, every node carries

- ``v``: its value, computed in a working precision (numpy float64 for float16/bfloat16/float32
  subjects; ``np.longdouble`` for float64 subjects where it is wider than double);
- ``e``: a bound on ``|exact - v|``, the oracle's own error (the same rules at the working
  precision's unit roundoff);
- ``r``: a bound on ``|computed - exact|`` for every computation the model admits;
- ``r0``: the same bound with the absolute underflow terms left out (``r - r0`` is the part of
  the allowance that gradual underflow accounts for).

The model (what "any implementation" means):

- inputs (param, grad, the state given, decided values) are exact; a fresh state's initial value
  (Rprop's ``lr``) is rounded into the dtype once;
- every operation on tensors is correctly rounded at the subject dtype's unit roundoff ``u``
  (float16/bfloat16 kernels that compute in float32 and round once on store round less);
- an n-ary sum may be evaluated in any association order and commutation: ``n - 1`` roundings
  of partial sums no larger than the sum of the terms' magnitudes (Higham, *Accuracy and
  Stability*, §4.2); an addition whose result is subnormal is exact, so sums add no underflow;
- an n-ary product likewise, with a divisor counted twice (``a/y`` or ``a*round(1/y)``); an
  fma is one rounding where the model counts two, so it is covered;
- ``sqrt`` is within 1 ULP (relative ``2u``), not necessarily correctly rounded (torch's CPU
  ``Tensor.sqrt``, conformance/bounds/torch_order.py); a general ``x**y`` likewise within 1 ULP;
  ``sqrt(a*b)`` may also be evaluated as ``sqrt(a)*sqrt(b)`` (torch's Adam/NAdam foreach
  ``sqrt(v)/sqrt(bc2)``): the bound is the larger of the two forms';
- ``Max``, ``Min``, ``Abs``, ``sign``, negation are exact; a ``Piecewise`` branch is chosen by
  exact (decided) values;
- a sub-expression of hyperparameters, the step count and 0-d states ("scalar") that is an
  operand of a tensor operation is evaluated in float64 in any order (``math.pow`` within 1
  ULP) and rounded once into the dtype (relative ``u/(1 - u)``, which also covers dividing by
  the rounded divisor); an equation whose target is a 0-d state torch keeps in its scalar dtype
  (``StateVar.own_dtype``: ASGD's eta and mu) is evaluated op by op in that dtype;
- each equation's target is stored in its dtype: one more rounding;
- gradual underflow: every multiplication, division, cast and store whose result may lie below
  the normal range adds ``h`` (half the smallest subnormal), times the largest factor by which
  later operations of the same product may scale it.

No first-order truncation: products of radii are kept (``(|x| + rx)(|y| + ry) - |x||y|``), the
quotient radius is ``r/(L(L - r))`` for a divisor of magnitude at least ``L``, a square root's
``min(sqrt(r), r/sqrt(L))``. The float64 (or long double) arithmetic of the radii is covered by
a factor ``1 + 2**-40`` per node.

The allowance of an output, in ULPs at ``S = max(|exact|, |before|)`` (``assert_scaled``), is
``0.5 + r0/spacing(S)`` (the exact value is itself rounded into the dtype) plus ``r - r0`` in
value units as the absolute part.
"""

from __future__ import annotations

import fractions
import math
from dataclasses import dataclass

import numpy as np
import sympy
import torch

from conformance.core.ulp import spacing

SAFETY = 1.0 + 2.0**-40  # the radii's own float64 arithmetic, per node


class Unsupported(ValueError):
    """A node or a spec the walker has no rule for (the caller falls back to the hand bound)."""


@dataclass(frozen=True)
class Format:
    """A binary format: unit roundoff ``u``, half its smallest subnormal ``h``, smallest normal."""

    name: str
    u: float
    h: float
    tiny: float
    dtype: torch.dtype | None  # None: the working precision (no representability test needed)


def _format(dtype: torch.dtype) -> Format:
    info = torch.finfo(dtype)
    return Format(str(dtype), info.eps / 2, info.tiny * info.eps / 2, info.tiny, dtype)


DOUBLE = _format(torch.float64)


def _work_type(dtype: torch.dtype):
    """The oracle's working precision: float64, or long double for float64 subjects where wider."""
    if dtype == torch.float64 and np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant:
        return np.longdouble
    return np.float64


def _work_format(work) -> Format:
    info = np.finfo(work)
    return Format(str(np.dtype(work)), float(info.eps) / 2, 0.0, float(info.tiny), None)


def _rel(ops, u: float):
    """``(1 + u)**ops - 1``: the relative error of ``ops`` compounded roundings, exactly bounded."""
    return np.expm1(np.asarray(ops, np.float64) * math.log1p(u))


def _representable(v, dtype: torch.dtype):
    """Elementwise: is ``v`` (work precision) a value of ``dtype``?"""
    v64 = np.asarray(v, np.float64)
    same = np.asarray(v) == v64
    if dtype == torch.float64:
        return same
    with np.errstate(all="ignore"):
        cast = torch.from_numpy(np.array(v64, np.float64)).to(dtype).double().numpy()
    return same & (cast == v64)


@dataclass
class Node:
    v: np.ndarray
    e: np.ndarray
    r: np.ndarray
    r0: np.ndarray
    scalar: bool

    @property
    def hi(self):  # >= |exact|
        return np.abs(self.v) + self.e

    @property
    def lo(self):  # <= |exact|
        return np.maximum(np.abs(self.v) - self.e, 0)

    @property
    def exact(self):
        return (self.e == 0) & (self.r == 0)


def _node(v, e, r, r0, scalar) -> Node:
    return Node(v, e * SAFETY, r * SAFETY, r0 * SAFETY, scalar)


def _round(node: Node, fmt: Format) -> Node:
    """``node`` rounded into ``fmt`` (a cast or a store): one rounding of the computed value,
    relative ``u/(1 - u)`` (``u`` would do for a store; the larger also covers dividing by a
    rounded divisor instead of multiplying by a rounded reciprocal), plus ``h`` where the
    computed value may be subnormal. Exact where the value is exact and representable."""
    if fmt.dtype is None:
        return node
    rel = fmt.u / (1 - fmt.u)
    keep = node.exact & _representable(node.v, fmt.dtype)
    small = node.lo - node.r < fmt.tiny
    r0 = np.where(keep, node.r0, node.r0 + rel * (node.hi + node.r0))
    r = np.where(keep, node.r, node.r + rel * (node.hi + node.r) + np.where(small, fmt.h, 0))
    return _node(node.v, node.e, r, r0, node.scalar)


def _cast(node: Node, fmt: Format) -> Node:
    """A scalar computed in double, cast into the tensor's dtype (nothing for float64)."""
    return node if fmt.dtype == torch.float64 else _round(node, fmt)


def _sum_radius(terms, radii, u):
    """Any-order sum: the terms' radii plus ``n - 1`` roundings of at most ``sum |terms|``."""
    live = [
        (t.hi + rad, np.asarray(~(t.exact & (t.v == 0)), np.float64))
        for t, rad in zip(terms, radii, strict=True)
    ]
    ops = np.maximum(sum(n for _, n in live) - 1, 0)
    return sum(radii) + _rel(ops, u) * sum(m for m, _ in live)


def _product_radius(factors, radii, u, h, tiny, with_underflow):
    """Any-order product of ``(node, is_divisor)`` factors with radii ``radii``: the exact
    interval product ``P + Q`` around ``P``, ``ops`` roundings of it, and (``with_underflow``)
    ``h`` per rounding wherever a partial product may be subnormal, times the largest factor
    the remaining operations can scale it by."""
    big, small = 1.0, 0.0
    ones, lows = 1.0, None  # upper bound of every factor's scaling, lower bounds
    ops = 0.0
    for (node, divisor), rad in zip(factors, radii):
        if divisor:
            lo = node.lo
            with np.errstate(all="ignore"):
                m = 1 / lo
                q = np.where(lo - rad > 0, rad / (lo * (lo - rad)), np.inf)
                low = 1 / (node.hi + rad)
            count = np.full(np.shape(lo), 2.0)
        else:
            m, q = node.hi, rad
            low = np.maximum(node.lo - rad, 0)
            trivial = node.exact & ((np.abs(node.v) == 1) | (node.v == 0))
            count = np.where(trivial, 0.0, 1.0)
        small = big * q + small * m + small * q
        big = big * m
        ops = ops + count
        ones = ones * np.maximum(1, m + q)
        low_small = np.where(low < 1, low, 1.0)
        if lows is None:
            lows = (low, low_small)
        else:
            lows = (np.minimum(lows[0], low), lows[1] * low_small)
    ops = np.maximum(ops - 1, 0)
    rel = _rel(ops, u)
    radius = small + rel * (big + small)
    # a factor that is exactly 0 makes the product exactly 0 (0 * finite), whatever the order
    zero = np.zeros(np.shape(radius), bool)
    for node, divisor in factors:
        if not divisor:
            zero = zero | (node.exact & (node.v == 0))
    if with_underflow:
        least = np.where(lows[1] < 1, lows[1], lows[0])  # the smallest partial product
        radius = radius + np.where(least * (1 - rel) < tiny, ops * h * ones * (1 + rel), 0)
    return np.where(zero, 0.0, radius)


def _sqrt_prop(node: Node, rad):
    lo = node.lo
    with np.errstate(all="ignore"):
        return np.where(lo > 0, np.minimum(np.sqrt(rad), rad / np.sqrt(lo)), np.sqrt(rad))


class Walker:
    """Walks a spec's equations at one drawn point (``values``: symbol -> input value)."""

    def __init__(self, values: dict, dtype: torch.dtype, fresh: dict):
        self.fmt = _format(dtype)
        self.work_type = _work_type(dtype)
        self.work = _work_format(self.work_type)
        self.env: dict[sympy.Symbol, Node] = {}
        for symbol, value in values.items():
            array = np.asarray(value, self.work_type)
            zero = np.zeros(np.shape(array))
            # a tensor (param, grad, per-element state, a decided array) is an ndarray even
            # when 0-d; hyperparameters, the step and 0-d states are Python floats
            node = Node(array, zero, zero, zero, not isinstance(value, np.ndarray))
            if symbol in fresh:  # a fresh state: its initial value rounded into its dtype
                node = _round(node, _format(fresh[symbol]))
            self.env[symbol] = node

    # -- equations ---------------------------------------------------------------------------
    def equation(self, target: sympy.Symbol, expr: sympy.Expr, store: torch.dtype, own: bool):
        """``target <- expr``, stored in ``store``. ``own``: a 0-d state in torch's scalar
        dtype, evaluated op by op in that dtype."""
        if own:
            node = self.walk(expr, _format(store), group=False)
        elif self._is_scalar(expr):  # the step count: a double (torch: float32), exact
            node, store = self.walk(expr, DOUBLE, group=False), torch.float64
        else:
            node = self.walk(expr, self.fmt, group=True)
        self.env[target] = _round(node, _format(store))

    def _is_scalar(self, expr) -> bool:
        return all(self.env[s].scalar for s in expr.free_symbols)

    # -- the tree ----------------------------------------------------------------------------
    def walk(self, expr, fmt: Format, group: bool) -> Node:
        """``expr``'s node, its operations rounding in ``fmt``. ``group``: a scalar operand is
        computed in double and cast into ``fmt`` once (else: leaves are cast into ``fmt``)."""
        if group and self._is_scalar(expr):
            return _cast(self.walk(expr, DOUBLE, group=False), fmt)
        if expr.is_Symbol:
            node = self.env[expr]
            return node if group else _round(node, fmt)
        if expr.is_Number:
            return _round(self._number(expr), fmt)
        if isinstance(expr, sympy.Add):
            return self._add([self.walk(a, fmt, group) for a in expr.args], fmt)
        if isinstance(expr, sympy.Mul):
            return self._mul(expr.args, fmt, group)
        if isinstance(expr, sympy.Pow):
            return self._pow(expr, fmt, group)
        if isinstance(expr, (sympy.Max, sympy.Min)):
            return self._extremum(expr, fmt, group)
        if isinstance(expr, sympy.Abs):
            a = self.walk(expr.args[0], fmt, group)
            return Node(np.abs(a.v), a.e, a.r, a.r0, a.scalar)
        if isinstance(expr, sympy.sign):
            return self._sign(self.walk(expr.args[0], fmt, group))
        if isinstance(expr, sympy.Piecewise):
            return self._piecewise(expr, fmt, group)
        raise Unsupported(f"no rule for {type(expr).__name__}: {expr}")

    def _number(self, c) -> Node:
        if c.is_Rational:
            v = self.work_type(int(c.p)) / self.work_type(int(c.q))
            exact = fractions.Fraction(int(c.p), int(c.q)) == fractions.Fraction(float(v))
            exact = exact and float(v) == v
        else:
            v, exact = self.work_type(float(c)), True
        e = 0.0 if exact else self.work.u * abs(float(v))
        zero = np.asarray(0.0)
        return Node(np.asarray(v), np.asarray(e), zero, zero, True)

    def _add(self, terms, fmt: Format) -> Node:
        scalar = all(t.scalar for t in terms)
        v = sum(t.v for t in terms)
        e = _sum_radius(terms, [t.e for t in terms], self.work.u)
        r = _sum_radius(terms, [t.r for t in terms], fmt.u)
        r0 = _sum_radius(terms, [t.r0 for t in terms], fmt.u)
        if scalar and all(np.all(t.exact) for t in terms):
            # an exact sum of exact scalars (the step count t + 1) stays exact
            exact = sum(fractions.Fraction(float(t.v)) for t in terms)
            if fractions.Fraction(float(v)) == exact and float(v) == v:
                e = np.asarray(0.0)
                if _representable(v, fmt.dtype or torch.float64):
                    r = r0 = np.asarray(0.0)
        return _node(np.asarray(v), np.asarray(e), r, r0, scalar)

    def _factors(self, args, fmt: Format, group: bool):
        """``(node, divisor)`` per factor: a tensor ``x**-k`` is the divisor ``x**k`` (division
        or multiplication by a rounded reciprocal); a scalar one is a cast reciprocal."""
        out = []
        for a in args:
            tensor_power = not (group and self._is_scalar(a))
            if isinstance(a, sympy.Pow) and a.exp.is_Number and a.exp < 0 and tensor_power:
                out.append((self.walk(sympy.Pow(a.base, -a.exp), fmt, group), True))
            else:
                out.append((self.walk(a, fmt, group), False))
        return out

    def _mul(self, args, fmt: Format, group: bool) -> Node:
        factors = self._factors(args, fmt, group)
        with np.errstate(all="ignore"):
            v = np.prod(np.broadcast_arrays(*[1 / n.v if d else n.v for n, d in factors]), axis=0)
        e = _product_radius(factors, [n.e for n, _ in factors], self.work.u, 0, 0, False)
        r0 = _product_radius(factors, [n.r0 for n, _ in factors], fmt.u, 0, 0, False)
        r = _product_radius(factors, [n.r for n, _ in factors], fmt.u, fmt.h, fmt.tiny, True)
        return _node(np.asarray(v), e, r, r0, all(n.scalar for n, _ in factors))

    def _pow(self, expr, fmt: Format, group: bool) -> Node:
        base, exp = expr.args
        if exp.is_Integer and exp > 0:
            return self._mul([base] * int(exp), fmt, group)
        if exp.is_Number and exp < 0:
            return self._mul([expr], fmt, group)
        if exp == sympy.Rational(1, 2):
            return self._square_root(base, fmt, group)
        return self._general_pow(self.walk(base, fmt, group), self.walk(exp, fmt, group), fmt)

    def _square_root(self, base, fmt: Format, group: bool) -> Node:
        """``sqrt(base)``; a product's root may also be taken as the product of its factors'
        roots (``sqrt(v/bc2)`` as ``sqrt(v)/sqrt(bc2)``): the larger radius of the two forms."""
        node = self._sqrt(self.walk(base, fmt, group), fmt)
        if not (group and isinstance(base, sympy.Mul)):
            return node
        factors = [self.walk(f, fmt, group) for f in base.args]
        if any(np.any(f.v < 0) for f in factors):
            return node  # the split form is not the same value there

        def root(f):
            if isinstance(f, sympy.Pow) and f.exp.is_Number and f.exp < 0:
                return sympy.Pow(sympy.Pow(f.base, -f.exp / 2, evaluate=False), -1, evaluate=False)
            return sympy.Pow(f, sympy.Rational(1, 2), evaluate=False)

        split = self._mul([root(f) for f in base.args], fmt, group)
        return Node(
            node.v,
            np.maximum(node.e, split.e),
            np.maximum(node.r, split.r),
            np.maximum(node.r0, split.r0),
            node.scalar,
        )

    def _sqrt(self, x: Node, fmt: Format) -> Node:
        """Within 1 ULP: ``2u`` relative of the result, which is never subnormal."""
        if np.any(x.v + x.e < 0):
            raise Unsupported("square root of a negative value")
        v = np.sqrt(np.maximum(x.v, 0))
        e = _sqrt_prop(x, x.e) + self.work.u * np.sqrt(x.hi)
        r = _sqrt_prop(x, x.r) + 2 * fmt.u * np.sqrt(x.hi + x.r)
        r0 = _sqrt_prop(x, x.r0) + 2 * fmt.u * np.sqrt(x.hi + x.r0)
        return _node(v, e, r, r0, x.scalar)

    def _general_pow(self, x: Node, y: Node, fmt: Format) -> Node:
        """``x**y`` for ``x > 0``, within 1 ULP: the partial derivatives' largest values over the
        box of both arguments (``x**(y - 1)`` and ``x**y`` are monotone in each argument, so
        largest at a corner) times the radii."""
        with np.errstate(all="ignore"):
            v = np.power(x.v, y.v)

        # 0**y is exactly 0 for y > 0 (beta**t with beta = 0)
        zero = (x.v == 0) & (x.e == 0) & (y.v - y.e > 0)

        def radius(rx, ry, u):
            rx = np.where(zero, 0.0, rx)
            if np.all(zero | (rx == 0) & (ry == 0)):  # exact operands: pow's own rounding
                return np.where(zero & (rx == 0), 0.0, 2 * u * np.abs(v))
            xs = (np.where(zero, 1.0, x.lo - rx), np.where(zero, 1.0, x.hi + rx))
            ys = (y.v - y.e - ry, y.v + y.e + ry)
            if np.any(xs[0] <= 0):
                raise Unsupported("a power of a base that may be <= 0")
            corners = [(a, b) for a in xs for b in ys]
            d_x = (np.abs(y.v) + y.e + ry) * np.max([a ** (b - 1) for a, b in corners], axis=0)
            d_y = np.max([a**b for a, b in corners], axis=0) * np.maximum(
                np.abs(np.log(xs[0])), np.abs(np.log(xs[1]))
            )
            prop = np.where(zero, 0.0, d_x * rx + d_y * ry)
            return prop + 2 * u * (np.abs(v) + prop)

        e = radius(x.e, y.e, self.work.u)
        r, r0 = radius(x.r, y.r, fmt.u), radius(x.r0, y.r0, fmt.u)
        return _node(np.asarray(v), e, r, r0, x.scalar and y.scalar)

    def _extremum(self, expr, fmt: Format, group: bool) -> Node:
        """Exact: ``|max(a', b') - max(a, b)| <= max(|a' - a|, |b' - b|)``, and where the
        chosen argument's interval lies clear of all others' (Rprop's clamp far from its
        limits), only the chosen argument's radius."""
        nodes = [self.walk(a, fmt, group) for a in expr.args]
        larger = isinstance(expr, sympy.Max)
        shape = np.broadcast_shapes(*(np.shape(n.v) for n in nodes))
        values = np.stack([np.broadcast_to(n.v, shape) for n in nodes])
        chosen = np.argmax(values, axis=0) if larger else np.argmin(values, axis=0)
        v = np.take_along_axis(values, chosen[None], axis=0)[0]
        worst = []
        for k in ("e", "r", "r0"):
            rad = np.stack(
                [np.broadcast_to(getattr(n, k) + n.e * (k != "e"), shape) for n in nodes]
            )
            own = np.stack([np.broadcast_to(getattr(n, k), shape) for n in nodes])
            sign = 1 if larger else -1
            low = sign * values - rad  # the side toward which another argument could win
            high = sign * values + rad
            pick = np.take_along_axis(low, chosen[None], axis=0)[0]
            others = np.where(
                np.arange(len(nodes))[:, None] == chosen.reshape(1, -1),
                -np.inf,
                high.reshape(len(nodes), -1),
            ).reshape(high.shape)
            clear = pick > np.max(others, axis=0)
            mine = np.take_along_axis(own, chosen[None], axis=0)[0]
            worst.append(np.where(clear, mine, np.max(own, axis=0)))
        return Node(v, *worst, all(n.scalar for n in nodes))

    def _sign(self, x: Node) -> Node:
        """Exact where the value cannot cross zero; else off by up to 2."""
        r = np.where(x.exact | (x.lo - x.r > 0), 0.0, 2.0)
        e = np.where((x.e == 0) | (x.lo > 0), 0.0, 2.0)
        return Node(np.sign(x.v), e, r, r, x.scalar)

    def _piecewise(self, expr, fmt: Format, group: bool) -> Node:
        """The branch the exact (decided) values choose, element by element."""
        parts, shape = [], ()
        for value, condition in expr.args:
            if condition is sympy.true:
                mask = np.asarray(True)
            else:
                symbols = sorted(condition.free_symbols, key=str)
                if not all(np.all(self.env[s].exact) for s in symbols):
                    raise Unsupported(f"a branch chosen by a computed value: {condition}")
                args = [np.asarray(self.env[s].v, np.float64) for s in symbols]
                mask = np.asarray(sympy.lambdify(symbols, condition, "numpy")(*args), bool)
            parts.append((mask, value))
            shape = np.broadcast_shapes(shape, np.shape(mask))
            if np.all(mask):
                break
        # a branch no element takes is not walked (RAdam's rectified form has no real value
        # at the steps it is not taken)
        taken, walked = np.zeros(shape, bool), []
        for mask, value in parts:
            use = np.broadcast_to(mask, shape) & ~taken
            taken = taken | use
            if use.any():
                node = self.walk(value, fmt, group)
                walked.append((use, node))
                shape = np.broadcast_shapes(shape, np.shape(node.v))
        parts = walked
        taken = np.zeros(shape, bool)
        out = {k: np.zeros(shape) for k in ("e", "r", "r0")}
        out["v"] = np.zeros(shape, self.work_type)
        for mask, node in parts:
            use = np.broadcast_to(mask, shape) & ~taken
            taken = taken | use
            for k in out:
                out[k] = np.where(use, np.broadcast_to(getattr(node, k), shape), out[k])
        scalar = shape == () and all(node.scalar for _, node in parts)
        return Node(out["v"], out["e"], out["r"], out["r0"], scalar)


def radii(spec, param, grad, state, hyper, dtype: torch.dtype) -> dict:
    """Per output of ``spec``'s step from these inputs: ``(r0, r)`` in value units, ``r``
    bounding ``|computed - exact|`` for any implementation in the model, ``r0`` the same
    without the underflow terms. Raises ``Unsupported`` where the walker has no rule."""
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise Unsupported(f"{dtype}: the walker models real binary formats only")
    given = {k: v for k, v in (state or {}).items() if v is not None}
    if any(np.iscomplexobj(x) for x in (param, grad, *given.values())):
        raise Unsupported("complex values: the walker models real arithmetic only")
    first, args = spec._inputs(param, grad, given, hyper, dtype)
    values = dict(zip(spec._arguments(), args, strict=True))
    fresh = {
        var.symbol: spec.output_dtype(var.name, dtype)
        for var in spec.state
        if var.name not in given and var.initial is not None and not var.scalar
    }
    walker = Walker(values, dtype, fresh)
    rules = spec.first_updates if first and spec.first_updates is not None else spec.updates
    by_symbol = {var.symbol: var for var in spec.state}
    by_name = {var.name: var for var in spec.state}
    with np.errstate(all="ignore"):  # a divisor that may vanish: an infinite radius there
        for target, expr in rules:
            var = by_symbol.get(target)
            store = spec.output_dtype(var.name, dtype) if var is not None else dtype
            walker.equation(target, expr, store, own=var is not None and var.own_dtype)
    shape = np.shape(param)
    out = {}
    for name in spec.outputs:
        symbol = spec.param if name == "param" else by_name[name].symbol
        node = walker.env[symbol]
        own = () if name != "param" and by_name[name].scalar else shape
        r, r0 = (np.broadcast_to(np.asarray(x, np.float64), own) for x in (node.r, node.r0))
        with np.errstate(invalid="ignore"):
            out[name] = (np.array(r0), np.array(np.maximum(r - r0, 0)))
    return out


@dataclass(frozen=True)
class Allowance:
    ulps: np.ndarray  # per element, ULPs at scale (0.5 for the exact value's rounding included)
    absolute: np.ndarray  # per element, value units: the underflow terms

    def total(self, scale_spacing) -> np.ndarray:
        return self.ulps + self.absolute / scale_spacing


def scale_spacing(exact, before, dtype) -> np.ndarray:
    """``spacing(max(|exact|, |before|))`` as ``assert_scaled`` measures."""
    exact = np.asarray(exact, np.float64)
    before = np.broadcast_to(np.asarray(before, np.float64), exact.shape)
    scale = np.maximum(np.abs(exact), np.abs(before))
    return spacing(torch.from_numpy(np.array(scale)), dtype).numpy()


def allowance(spec, param, grad, state, hyper, dtype, exact: dict) -> dict[str, Allowance]:
    """The automatic allowance per output (not ``step``, which is judged exactly)."""
    state = state or {}
    out = {}
    for name, (r0, absolute) in radii(spec, param, grad, state, hyper, dtype).items():
        if name == "step" or name not in exact:
            continue
        before = param if name == "param" else state.get(name, 0.0)
        s = scale_spacing(exact[name], before, spec.output_dtype(name, dtype))
        with np.errstate(all="ignore"):
            out[name] = Allowance(0.5 + r0 / s, absolute)
    return out
