"""The judging core: what a failure says, and the assertions that say it.

A check builds a ``Context`` (which check, which subject, which case, what "expected" is) and
judges with ``assert_ulp`` (two tensors, ULP distance), ``assert_scaled`` (against an exact value,
ULPs at scale) or ``assert_within`` (an absolute allowance per element). A failure raises
``ConformanceError`` whose message names the optimizer, hyperparameters, dtype, device, tensor,
element, expected and actual values, the distance and its allowance, and two reproductions: one
through the harness without Hypothesis, one in plain torch. Nothing here knows a check kind.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis.errors import HypothesisException
from torch import Tensor

from conformance.core import repro
from conformance.core.case import Case
from conformance.core.ulp import max_or_zero, scaled_ulp_error, spacing, ulp_distance


class ConformanceError(AssertionError):
    pass


class BothRaised(Exception):
    """Both sides raised the same error: nothing more to compare."""


_CONTEXTS: list = []  # the contexts of the checks running now, innermost last


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

    def __post_init__(self):
        _CONTEXTS.append(self)

    @property
    def entry(self):
        return self.subject.entry

    def fail(self, what: str, detail: str) -> None:
        c = self.case
        groups = [{k: v for k, v in g.items() if k != "params"} for g in c.groups]
        raise ConformanceError(
            f"{self.check}: {self.subject.label} (as {self.entry.name}, {self.subject.contract} "
            f"contract) disagrees with {self.reference}\n"
            f"  dtype={c.dtype} device={c.device} foreach={c.foreach} "
            f"torch_foreach={c.torch_foreach} tensor_lr={c.tensor_lr}\n"
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
    allowed = torch.from_numpy(per_element) + torch.from_numpy(
        np.broadcast_to(np.asarray(absolute, np.float64), exact.shape).copy()
    ) / spacing(scale, dtype)
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
