"""The judging core: what a failure says, and the assertions that say it.

A check builds a ``Context`` (which check, which subject, which case, what "expected" is) and
judges with ``assert_ulp`` (two tensors, ULP distance), ``assert_scaled`` (against an exact value,
ULPs at scale) or ``assert_within`` (an absolute allowance per element). A failure raises
``ConformanceError`` whose message names the optimizer, hyperparameters, dtype, device, tensor,
element, expected and actual values, the distance and its allowance, and two reproductions: one
through the harness without Hypothesis, one in plain torch. Nothing here knows a check kind.

Every judgment also records its ``Margin``: the measure, the allowance and their ratio at the
element where that ratio is largest, and which analysis the allowance came from. It is kept on
the judging ``Context`` and in ``MARGINS`` (the worst since the plugin started the test item),
so the report can show how close each row came to its allowance without any check returning
more than its number.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field

import numpy as np
import torch
from hypothesis.errors import HypothesisException
from torch import Tensor

from conformance.core import repro
from conformance.core.case import Case
from conformance.core.ulp import max_or_zero, scaled_ulp_error, spacing, ulp_distance


class ConformanceError(AssertionError):
    pass


@functools.cache
def _failure_kind(check: str, where: str) -> type[ConformanceError]:
    """One ConformanceError subclass per check and place of disagreement (indices blanked: a
    param's element 3 and element 40 are the same place). Hypothesis tells failures apart by
    exception type and raising line, and every disagreement is raised here: without this, the
    simplest failure found (a skipped step that creates state) would be the only one reported,
    and hide another (a vector body computed wrongly) that the same run found."""
    return type("ConformanceError", (ConformanceError,), {"where": f"{check}: {where}"})


class BothRaised(Exception):
    """Both sides raised the same error: nothing more to compare."""


_CONTEXTS: list = []  # the contexts of the checks running now, innermost last


@dataclass(frozen=True)
class Margin:
    """How close a judged value came to its allowance, at the element where ``measure /
    allowance`` is largest (values in the assertion's own unit: ULPs, ULPs at scale, or value
    units for ``assert_within``). ``absolute``: the part of ``allowance`` that is the
    analysis's absolute terms (``assert_scaled``'s ``absolute``: underflow terms, and errors an
    op order makes absolute, as SparseAdam's sub-then-add moments) rather than its relative
    bound."""

    measure: float
    allowance: float
    source: str
    absolute: float = 0.0
    what: str = ""

    @property
    def ratio(self) -> float:
        """0 where nothing was measured (bitwise: 0 of 0), 0 where nothing was judged (an
        infinite allowance), infinite where an error met a zero allowance or is NaN."""
        if self.measure == 0 or self.allowance == math.inf:
            return 0.0
        if self.allowance == 0 or self.measure != self.measure:
            return math.inf
        return self.measure / self.allowance

    @property
    def mostly_absolute(self) -> bool:
        """The allowance there is mostly absolute terms: a tiny or cancelled value judged
        against what the analysis allows in value units, not a count of roundings."""
        return self.absolute > self.allowance / 2

    def worse_than(self, other: Margin | None) -> bool:
        """Larger ratio; at equal ratio (every error 0) the tighter allowance."""
        return other is None or (self.ratio, -self.allowance) > (other.ratio, -other.allowance)

    def as_dict(self) -> dict:
        """The report's form (JSON), ratio and flag included so a reader needs no code."""
        return {
            "measure": self.measure,
            "allowance": self.allowance,
            "ratio": self.ratio,
            "source": self.source,
            "mostly_absolute": self.mostly_absolute,
            "at": self.what,
        }


class Margins:
    """The worst margin recorded since ``start``: the plugin starts it before each test item
    and takes it after, one item's judgments (failing and shrinking examples included)."""

    def __init__(self):
        self.worst: Margin | None = None

    def start(self) -> None:
        self.worst = None

    def see(self, margin: Margin) -> None:
        if margin.worse_than(self.worst):
            self.worst = margin

    def take(self) -> Margin | None:
        worst, self.worst = self.worst, None
        return worst


MARGINS = Margins()


def explained(check):
    """A check whose subject raises on valid input fails with the full explanation (the case,
    both reproductions) instead of a bare traceback from inside the optimizer."""

    @functools.wraps(check)
    def run(*args, **kwargs):
        depth = len(_CONTEXTS)
        try:
            return check(*args, **kwargs)
        except (ConformanceError, HypothesisException, BothRaised):
            raise
        except Exception as e:
            if len(_CONTEXTS) > depth:
                _CONTEXTS[-1].fail("a call on valid input", f"raised {e!r}")
            raise
        finally:
            del _CONTEXTS[depth:]

    return run


@dataclass
class Context:
    """What a failure message needs to explain itself."""

    check: str
    subject: object
    case: Case
    reference: str  # what "expected" is
    # for the plain-torch reproduction: the runs compared, as (class, kwargs, case) triples,
    # or the expected values themselves (spec checks)
    runs: tuple = ()
    # the worst of this context's judgments (``record``)
    margin: Margin | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        _CONTEXTS.append(self)

    def record(self, margin: Margin) -> None:
        """Keep the margin of one judgment here and in ``MARGINS`` (the report's). A context
        whose judgments are only reported, never a verdict, can override this to keep them
        out of the row's margin."""
        if margin.worse_than(self.margin):
            self.margin = margin
        MARGINS.see(margin)

    @property
    def entry(self):
        return self.subject.entry

    def fail(self, what: str, detail: str) -> None:
        c = self.case
        groups = [{k: v for k, v in g.items() if k != "params"} for g in c.groups]
        raise _failure_kind(self.check, re.sub(r"\d+", "#", what))(
            f"{self.check}: {self.subject.label} (as {self.entry.name}, {self.subject.contract} "
            f"contract) disagrees with {self.reference}\n"
            f"  dtype={c.dtype} device={c.device} foreach={c.foreach} "
            f"torch_foreach={c.torch_foreach} tensor_lr={c.tensor_lr}"
            + (" tensor_betas=True" if c.tensor_betas else "")
            + "\n"
            f"  hyperparameters per group: {groups}\n"
            f"  at {what}: {detail}\n"
            f"Reproduce in plain torch:\n{repro.plain_torch(self.runs, self.case, what)}"
            f"Reproduce without Hypothesis:\n{snippet(self)}"
        )


def snippet(ctx: Context) -> str:
    """Replays the case through the harness (``SUBJECT`` as in the failing run)."""
    s = ctx.subject
    return (
        "    import numpy as np\n"
        "    from conformance import checks, registry\n"
        "    from conformance.core.case import Case, Objective, P, Sparse\n"
        "    from conformance.subject import Subject, load_class\n"
        f"    case = {ctx.case!r}\n".replace("\n     ", "\n         ")
        + f"    SUBJECT = Subject(load_class({repro.import_path(s.cls)!r}), "
        f"registry.BY_NAME[{ctx.entry.name!r}], {dict(s.kwargs)!r}, {s.contract!r}, "
        f"{s.reference!r})\n" + f"    checks.CHECKS[{ctx.check!r}](SUBJECT, case)"
    )


def element_index(t: Tensor, flat_index: int):
    if t.dim() == 0:
        return ()
    return tuple(int(i) for i in np.unravel_index(flat_index, tuple(t.shape)))


def _worst_element(measure: np.ndarray, allowance: np.ndarray) -> int | None:
    """Flat index where ``measure / allowance`` is largest, with ``Margin.ratio``'s conventions
    (0 of 0 is 0, anything of an infinite allowance 0, NaN or anything of 0 infinite); at equal
    ratio the smallest allowance. None for no elements."""
    measure, allowance = measure.reshape(-1), allowance.reshape(-1)
    if measure.size == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isnan(measure), np.inf, measure / allowance)
    ratio = np.where((measure == 0) | (allowance == np.inf), 0.0, ratio)
    return int(np.lexsort((allowance, -ratio))[0])


def _record(ctx, what, measure, allowance, source, absolute=None) -> None:
    """``ctx.record`` the margin at the element where the ratio is largest."""
    measure = np.asarray(measure, np.float64)
    allowance = np.broadcast_to(np.asarray(allowance, np.float64), measure.shape)
    k = _worst_element(measure, allowance)
    if k is None:
        return
    part = 0.0 if absolute is None else float(np.broadcast_to(absolute, measure.shape).flat[k])
    margin = Margin(float(measure.flat[k]), float(allowance.flat[k]), source, part, what)
    getattr(ctx, "record", MARGINS.see)(margin)  # a stand-in context without one: the report's


def _ulp_source(bound: float) -> str:
    if bound == 0:
        return "bitwise"
    return "not judged" if bound == math.inf else "ULP bound"


def assert_ulp(ctx: Context, what: str, actual: Tensor, expected: Tensor, bound: float) -> float:
    """ULP distance between two tensors of the same dtype, shape, device and layout; raise above
    bound. Sparse tensors (SGD's momentum buffer after a sparse gradient) compare as stored: the
    same indices in the same order, coalesced or not alike, values within the bound."""
    for attr in ("dtype", "shape", "device", "layout"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
    if expected.is_sparse:
        if actual.is_coalesced() != expected.is_coalesced():
            ctx.fail(what, f"is_coalesced() {actual.is_coalesced()} != {expected.is_coalesced()}")
        if not torch.equal(actual._indices(), expected._indices()):
            ctx.fail(
                what, f"indices {actual._indices().tolist()} != {expected._indices().tolist()}"
            )
        return assert_ulp(ctx, f"{what} (values)", actual._values(), expected._values(), bound)
    dist = ulp_distance(actual, expected)
    worst = max_or_zero(dist)
    _record(ctx, what, dist.numpy(), bound, _ulp_source(bound))
    if worst > bound:
        flat = int(dist.reshape(-1).argmax())
        a, e = torch.view_as_real(actual) if actual.is_complex() else actual, expected
        e = torch.view_as_real(e) if e.is_complex() else e
        idx = element_index(a, flat)
        ctx.fail(
            what,
            f"element {idx}: expected {e.reshape(-1)[flat].item()!r}, "
            f"actual {a.reshape(-1)[flat].item()!r}, {worst:g} ULP (allowed {bound})",
        )
    return worst


def assert_scaled(
    ctx,
    what,
    actual: np.ndarray,
    exact: np.ndarray,
    ref: np.ndarray,
    dtype,
    bound,
    absolute=0.0,
    *,
    source: str = "derived",
):
    """Error of ``actual`` vs the correctly rounded ``exact`` in ULPs at scale (see ulp.py).

    ``bound``: ULPs at scale, one number or one per element. ``absolute`` (value units, broadcast
    per element) is an allowance on top of it: the underflow terms of the analysis, converted at
    each element's own scale. ``source`` names the analysis the allowance comes from (the report
    shows it beside the margin)."""
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    ref = np.broadcast_to(np.asarray(ref, np.float64), exact.shape)
    if actual.shape != exact.shape:
        ctx.fail(what, f"shape {actual.shape} != expected {exact.shape}")
    err = scaled_ulp_error(*(torch.from_numpy(np.array(x)) for x in (actual, exact, ref)), dtype)
    worst = max_or_zero(err)
    scale = torch.from_numpy(np.array(np.maximum(np.abs(exact), np.abs(ref))))
    per_element = np.broadcast_to(np.asarray(bound, np.float64), exact.shape).copy()
    in_ulps = torch.from_numpy(
        np.broadcast_to(np.asarray(absolute, np.float64), exact.shape).copy()
    ) / spacing(scale, dtype)
    allowed = torch.from_numpy(per_element) + in_ulps
    _record(ctx, what, err.numpy(), allowed.numpy(), source, in_ulps.numpy())
    over = err - allowed
    if over.numel() and float(over.nan_to_num(nan=np.inf).max()) > 0:
        flat = int(over.nan_to_num(nan=np.inf).reshape(-1).argmax())
        worst = float(err.reshape(-1)[flat])
        shown = (
            f"{float(allowed.reshape(-1)[flat]):.3g}"
            if np.any(absolute) or np.ndim(bound)
            else bound
        )
        idx = tuple(int(i) for i in np.unravel_index(flat, exact.shape)) if exact.ndim else ()
        ctx.fail(
            what,
            f"element {idx}: expected {exact.reshape(-1)[flat]!r} (exact, rounded to {dtype}), "
            f"actual {actual.reshape(-1)[flat]!r}, {worst:.3g} ULP at scale "
            f"{max(abs(exact.reshape(-1)[flat]), abs(ref.reshape(-1)[flat]))!r} "
            f"(allowed {shown}, {source} bound)",
        )
    return worst


def assert_within(ctx, what: str, actual, exact, allowed, scale) -> float:
    """``|actual - exact| <= allowed`` per element; returns max ``|actual - exact| / scale``."""
    actual, exact = np.asarray(actual, np.float64), np.asarray(exact, np.float64)
    allowed = np.broadcast_to(np.asarray(allowed, np.float64), exact.shape)
    scale = np.broadcast_to(np.asarray(scale, np.float64), exact.shape)
    if actual.shape != exact.shape:
        ctx.fail(what, f"shape {actual.shape} != expected {exact.shape}")
    err = np.abs(actual - exact)
    err = np.where(actual == exact, 0.0, err)
    _record(ctx, what, err, allowed, "absolute allowance")
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
