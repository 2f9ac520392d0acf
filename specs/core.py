"""Spec representation: symbols, ordered elementwise update equations, and their evaluation.

A spec is data. Its numeric oracles are generated from the equations with ``lambdify`` (numpy
float64 for trajectories; mpmath for single steps correctly rounded into a target dtype), so the
math is written once, symbolically.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import mpmath
import numpy as np
import sympy
import torch
from sympy.printing.pretty.pretty import PrettyPrinter
from sympy.printing.pretty.stringpict import prettyForm

from .rounding import binary_format, near_midpoint, round_to_format

Update = tuple[sympy.Symbol, sympy.Expr]

# Shared symbols: every spec updates `p` from the gradient `g` taken at `grad_at` (default p).
PARAM = sympy.Symbol("p", real=True)
GRAD = sympy.Symbol("g", real=True)
STEP = sympy.Symbol("t", integer=True, nonnegative=True)

NONNEGATIVE = sympy.Interval(0, sympy.oo)
UNIT_INTERVAL = sympy.Interval.Ropen(0, 1)


@dataclass(frozen=True)
class Hyper:
    name: str  # key in a torch param_group (betas are split into beta1/beta2)
    symbol: sympy.Symbol
    domain: sympy.Set  # torch's validation domain
    default: float  # torch's default (or the seed's, for seed variants)


@dataclass(frozen=True)
class StateVar:
    name: str  # torch state key
    symbol: sympy.Symbol
    # Value of a fresh state; None means torch creates it lazily on the first step, which the
    # spec then describes with `first_updates` (SGD's momentum buffer becomes the gradient).
    initial: sympy.Expr | None
    scalar: bool = False  # one value per tensor (the step counter), not per element
    # A 0-d state torch stores in its scalar dtype (float32; float64 under a float64 default
    # dtype) whatever the param's dtype: NAdam's mu_product, ASGD's eta and mu. Its exact value
    # is rounded into that dtype, not the param's.
    own_dtype: bool = False


@dataclass(frozen=True)
class Spec:
    name: str
    hypers: tuple[Hyper, ...]
    state: tuple[StateVar, ...]
    updates: tuple[Update, ...]  # ordered; a later equation sees earlier results
    first_updates: tuple[Update, ...] | None = None  # used while a lazy state is missing
    grad_at: sympy.Expr = PARAM  # where the caller must take the gradient (look-ahead forms)
    notes: str = ""  # how it differs from torch, for reports
    # Values torch takes in floating point outside the elementwise math, which the exact oracle
    # takes the same way: branch selectors (RAdam's rho_t > 5 evaluated in double, Rprop's sign
    # of g*prev rounded into the dtype) and scalars torch keeps rounded (NAdam's float32
    # mu_product). ``decided`` maps each symbol to its exact meaning (used by proofs and by the
    # exact-math variants); ``decide(param, grad, state, hyper, dtype)`` returns its value as
    # torch computes it (a float, or an array over the param's elements).
    decided: Mapping[sympy.Symbol, sympy.Expr] = field(default_factory=dict)
    decide: Callable | None = field(default=None, repr=False, compare=False)
    param: sympy.Symbol = field(default=PARAM, repr=False)
    grad: sympy.Symbol = field(default=GRAD, repr=False)

    # ---- structure -------------------------------------------------------------------------

    def hyper(self, name: str) -> Hyper:
        return next(h for h in self.hypers if h.name == name)

    @property
    def defaults(self) -> dict[str, float]:
        return {h.name: h.default for h in self.hypers}

    @property
    def outputs(self) -> tuple[str, ...]:
        return ("param", *(s.name for s in self.state))

    def final_expressions(self, first: bool = False) -> dict[str, sympy.Expr]:
        """Each output as one expression of the inputs, by substituting the equations in order."""
        rules = self.first_updates if first and self.first_updates is not None else self.updates
        values: dict[sympy.Symbol, sympy.Expr] = {}
        for target, expr in rules:
            values[target] = expr.xreplace(values)
        result = {"param": values.get(self.param, self.param)}
        for var in self.state:
            result[var.name] = values.get(var.symbol, var.symbol)
        return result

    def _arguments(self) -> list[sympy.Symbol]:
        return [
            self.param,
            self.grad,
            *(v.symbol for v in self.state),
            *(h.symbol for h in self.hypers),
            *self.decided,
        ]

    def exact(self) -> Spec:
        """The same rules with every decided symbol replaced by its exact meaning: the pure
        math, for proofs and float64 trajectories of the rule itself."""
        if not self.decided:
            return self

        def substitute(rules):
            return None if rules is None else tuple((t, e.xreplace(self.decided)) for t, e in rules)

        state = tuple(
            v
            if v.initial is None
            else dataclasses.replace(v, initial=v.initial.xreplace(self.decided))
            for v in self.state
        )
        return dataclasses.replace(
            self,
            state=state,
            updates=substitute(self.updates),
            first_updates=substitute(self.first_updates),
            decided={},
            decide=None,
        )

    def output_dtype(self, name: str, dtype):
        """The dtype an output is stored in: the param's, or torch's scalar dtype."""
        var = next((v for v in self.state if v.name == name), None)
        if var is not None and var.own_dtype:
            return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        return dtype

    # ---- readable math ---------------------------------------------------------------------

    def pretty(self) -> str:
        lines = [f"{self.name}"]
        lines.append(
            "  hyperparameters: "
            + ", ".join(
                f"{h.name} ∈ {_PRINTER.doprint(h.domain)} (default {h.default:g})"
                for h in self.hypers
            )
        )
        if self.state:
            initial = ", ".join(
                f"{v.name}={'set on first step' if v.initial is None else _one_line(v.initial)}"
                for v in self.state
            )
            lines.append(f"  state (fresh): {initial}")
        for symbol, meaning in self.decided.items():
            lines.append(
                f"  decided as torch computes it: {_PRINTER.doprint(symbol)}"
                f" (exactly {_one_line(meaning)})"
            )
        if self.grad_at != self.param:
            lines.append(f"  gradient taken at: {_PRINTER.doprint(self.grad_at)}")
        if self.first_updates is not None:
            lines.append("  first step (lazy state missing):")
            lines += [_indent(_assignment(t, e), 4) for t, e in self.first_updates]
            lines.append("  later steps:")
        lines += [_indent(_assignment(t, e), 4) for t, e in self.updates]
        if self.notes:
            lines.append("  notes: " + self.notes)
        return "\n".join(lines)

    # ---- numeric oracles -------------------------------------------------------------------

    @cached_property
    def _float64_functions(self) -> dict[bool, Callable]:
        return {first: self._lambdify(first, _NUMPY_MODULES) for first in self._modes}

    @cached_property
    def _mpmath_functions(self) -> dict[bool, Callable]:
        return {first: self._lambdify(first, _MPMATH_MODULES) for first in self._modes}

    @property
    def _modes(self) -> tuple[bool, ...]:
        return (False, True) if self.first_updates is not None else (False,)

    def _lambdify(self, first: bool, modules) -> Callable:
        outputs = list(self.final_expressions(first).values())
        return sympy.lambdify(self._arguments(), outputs, modules=modules, cse=True)

    def _inputs(self, param, grad, state: Mapping | None, hyper: Mapping, dtype="float64"):
        """Resolve inputs: (is_first_step, list of argument values as float64 arrays/numbers)."""
        state = {k: v for k, v in (state or {}).items() if v is not None}  # None: torch's lazy
        decided = self.decide(param, grad, state, hyper, dtype) if self.decide is not None else {}
        param = np.asarray(param, dtype=np.float64)
        grad = np.asarray(grad, dtype=np.float64)
        hyper_values = {h.symbol: float(hyper.get(h.name, h.default)) for h in self.hypers}
        first = any(v.initial is None and v.name not in state for v in self.state)
        state_values = []
        for var in self.state:
            if var.name in state:
                value = state[var.name]
            elif var.initial is None:
                value = np.zeros_like(param)  # unused: the first-step rule does not read it
            else:
                value = float(var.initial.xreplace({**hyper_values, **decided}))
            if var.scalar:
                state_values.append(float(np.asarray(value)))
            else:
                state_values.append(np.broadcast_to(np.asarray(value, np.float64), param.shape))
        decided_values = [
            decided[symbol] if np.ndim(decided[symbol]) == 0 else np.asarray(decided[symbol])
            for symbol in self.decided
        ]
        return first, [param, grad, *state_values, *hyper_values.values(), *decided_values]

    def step_float64(
        self, param, grad, state: Mapping | None, hyper: Mapping, dtype="float64"
    ) -> dict:
        """One step in float64 (numpy), vectorized; IEEE NaN/inf propagation. ``dtype`` is the
        one torch would compute in, for the decided values only."""
        first, args = self._inputs(param, grad, state, hyper, dtype)
        with np.errstate(all="ignore"):
            outputs = self._float64_functions[first](*args)
        return self._package(outputs, np.shape(args[0]))

    def _package(self, outputs, shape) -> dict:
        result = {}
        for name, value in zip(self.outputs, outputs, strict=True):
            var = next((v for v in self.state if v.name == name), None)
            if var is not None and var.scalar:
                result[name] = float(value)
            else:
                result[name] = np.array(np.broadcast_to(value, shape), dtype=np.float64)
        return result

    def step_exact(
        self, param, grad, state: Mapping | None, hyper: Mapping, dtype, *, digits: int = 50
    ) -> dict:
        """One step evaluated with mpmath at >= ``digits`` digits, correctly rounded into ``dtype``.

        Inputs are taken as exact binary values. Results that land too close to a rounding
        midpoint are recomputed at doubled precision (up to 8x) before rounding. An element whose
        exact evaluation hits a division by exact zero takes the IEEE float64 result instead
        (inf/NaN, which is what the exact limit would round to).
        """
        binary_format(dtype)  # validate early
        first, args = self._inputs(param, grad, state, hyper, dtype)
        shape = np.shape(args[0])
        reference = self.step_float64(param, grad, state, hyper, dtype)  # zero signs, 0/0
        dtypes = {name: self.output_dtype(name, dtype) for name in self.outputs}
        function = self._mpmath_functions[first]
        size = int(np.prod(shape))
        columns = [
            np.broadcast_to(a, shape).reshape(-1) if isinstance(a, np.ndarray) else None
            for a in args
        ]
        result = {name: np.empty(size) for name in self.outputs}
        for index in range(size):
            element = [float(a) if c is None else float(c[index]) for a, c in zip(args, columns)]
            fallback = {
                name: (value if np.ndim(value) == 0 else value.reshape(-1)[index])
                for name, value in reference.items()
            }
            rounded = _exact_element(function, element, self.outputs, dtypes, digits, fallback)
            for name, value in rounded.items():
                result[name][index] = value
        # the step counter is an exact integer, not a value of dtype (torch keeps it in float32)
        return {
            name: reference[name] if _is_scalar(self, name) else values.reshape(shape)
            for name, values in result.items()
        }

    def run_float64(
        self, x0, grad_fn: Callable, hyper: Mapping, steps: int, state: Mapping | None = None
    ) -> np.ndarray:
        """Trajectory in float64: rows are x0 and the parameter after each step."""
        x = np.asarray(x0, dtype=np.float64)
        state = dict(state or {})
        where = sympy.lambdify(self._arguments(), self.grad_at, modules=_NUMPY_MODULES)
        trajectory = [x]
        for _ in range(steps):
            _, args = self._inputs(x, np.zeros_like(x), state, hyper)
            point = np.broadcast_to(where(*args), x.shape)
            out = self.step_float64(x, np.asarray(grad_fn(point), np.float64), state, hyper)
            x = out.pop("param")
            state = out
            trajectory.append(x)
        return np.stack(trajectory)


def _is_scalar(spec: Spec, name: str) -> bool:
    return any(v.name == name and v.scalar for v in spec.state)


def _exact_element(function, element, names, dtypes, digits, fallback) -> dict[str, float]:
    # >= 64 bits keeps every float64 input exact whatever `digits` says; the inputs' exponent
    # spread is added on top so that a sum like m + (1 - b1)(g - m) with |m| >> |g| cannot
    # cancel away g's contribution (50 digits alone would, for spreads beyond ~1e20).
    base = max(mpmath.libmp.dps_to_prec(digits), 64) + _exponent_spread(element)
    values, previous = None, None
    for attempt in range(4):  # base, 2x, 4x, 8x bits
        with mpmath.workprec(base << attempt):
            try:
                values = function(*(mpmath.mpf(x) for x in element))
            except ZeroDivisionError:
                return {name: float(fallback[name]) for name in names}
            hard = any(
                near_midpoint(v, dtypes[name], mpmath.mp.prec - 8) for name, v in zip(names, values)
            )
        settled = previous is not None and all(a == b for a, b in zip(values, previous))
        if not hard or settled:
            break
        previous = values
    return {
        name: round_to_format(value, dtypes[name], zero_sign=math.copysign(1.0, fallback[name]))
        for name, value in zip(names, values)
    }


def _exponent_spread(element) -> int:
    exponents = [math.frexp(x)[1] for x in element if math.isfinite(x) and x != 0.0]
    return max(exponents) - min(exponents) if exponents else 0


def _real_sqrt(x):
    # torch.sqrt of a negative number is NaN; mpmath would go complex
    return mpmath.sqrt(x) if not x < 0 else mpmath.mpf("nan")


def _nan_max(a, b):
    # torch.maximum propagates NaN; Python's max depends on argument order
    if mpmath.isnan(a) or mpmath.isnan(b):
        return mpmath.mpf("nan")
    return a if a >= b else b


_NUMPY_MODULES = ["numpy"]
_MPMATH_MODULES = [{"sqrt": _real_sqrt, "max": _nan_max}, "mpmath"]


# ---- printing --------------------------------------------------------------------------------

_PRINTER = PrettyPrinter({"use_unicode": True, "wrap_line": False})


def _assignment(target: sympy.Symbol, expr: sympy.Expr) -> str:
    lhs = _PRINTER._print(target)
    return str(prettyForm(*lhs.right(" ← ", _PRINTER._print(expr))))


def _one_line(expr) -> str:
    return sympy.sstr(expr)


def _indent(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.splitlines())
