"""The ``errors`` check: bad input (``conformance.bad_input``) on the subject and on torch.optim.

Where the reference raises, the subject raises alike; where it does not, it propagates NaN and
infinity alike; a step it refuses changes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from conformance import bad_input
from conformance.core import repro
from conformance.core.case import Case
from conformance.core.judge import (
    BothRaised,
    ConformanceError,
    Context,
    assert_ulp,
    element_index,
    explained,
)
from conformance.core.running import attempt, compare_states, same_error, same_path
from conformance.subject import torch_reference


@dataclass
class _BadInputContext(Context):
    """A Context whose reproductions define ``nan`` and ``inf`` (bad cases hold them as values,
    and ``repr(float("nan"))`` is ``nan``) and pass the case's constructor ``defaults``."""

    defaults: dict | None = None

    def fail(self, what: str, detail: str) -> None:
        try:
            super().fail(what, detail)
        except ConformanceError as e:
            text = str(e)
            for line in ("\n    import torch\n", "\n    import numpy as np\n"):
                text = text.replace(line, line + _NONFINITE, 1)
            if self.defaults:
                call = f"checks.CHECKS[{self.check!r}](SUBJECT, case)"
                text = text.replace(call, f"{call[:-1]}, defaults={self.defaults!r})")
            raise ConformanceError(text) from None


_NONFINITE = "    from math import inf, nan\n"


def _equal(a, b) -> bool:
    """Hyperparameter or state value equality that tensors (in tuples too) and NaN survive."""
    if isinstance(a, Tensor) or isinstance(b, Tensor):
        return (
            isinstance(a, Tensor)
            and isinstance(b, Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and torch.equal(_bits(a), _bits(b))
        )
    if isinstance(a, tuple | list) or isinstance(b, tuple | list):
        return (
            type(a) is type(b)
            and len(a) == len(b)
            and all(_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _bits(t: Tensor) -> Tensor:
    t = t.detach()
    if t.is_sparse:  # as stored: indices, then values
        return torch.cat([_bits(t._indices()), _bits(t._values())])
    t = torch.view_as_real(t) if t.is_complex() else t
    if t.numel() == 0:
        return torch.empty(0, dtype=torch.uint8)
    flat = torch.empty(t.numel(), dtype=t.dtype)  # stride 1, even where t has one element
    return flat.copy_(t.reshape(-1)).view(torch.uint8)


def _snapshot(params: list[Tensor], opt) -> tuple:
    """The bits of the params and of every state_dict tensor (other state values as copies)."""
    state = {
        i: {k: _bits(v) if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in s.items()}
        for i, s in opt.state_dict()["state"].items()
    }
    return [_bits(p) for p in params], state


def _change(before: tuple, params: list[Tensor], opt) -> tuple[str, str] | None:
    """The first param or state entry that differs from the snapshot ``before``, bit for bit
    (NaNs included), as (where, what), or None."""
    params_before, state_before = before
    params_after, state_after = _snapshot(params, opt)
    for i, (x, y) in enumerate(zip(params_after, params_before, strict=True)):
        if not torch.equal(x, y):
            return f"param {i}", "changed"
    if state_after.keys() != state_before.keys():
        return "state", f"params with state {sorted(state_after)}, before {sorted(state_before)}"
    for i, sb in state_before.items():
        sa = state_after[i]
        if sa.keys() != sb.keys():
            return f"state[{i}]", f"keys {sorted(sa)}, before {sorted(sb)}"
        for key, vb in sb.items():
            va = sa[key]
            if not _equal(va, vb):
                return f"state[{i}][{key!r}]", "changed"
    return None


def assert_same_nonfinite(ctx: Context, what: str, actual: Tensor, expected: Tensor) -> None:
    """NaN where the expected tensor has NaN, and infinities of the same sign where it has
    infinities; finite values are not compared (``assert_ulp`` with ``bound=inf`` judges
    nothing, NaN against a number included)."""
    for attr in ("dtype", "shape", "device"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
    a, e = (x.detach().cpu() for x in (actual, expected))
    a = torch.view_as_real(a) if a.is_complex() else a
    e = torch.view_as_real(e) if e.is_complex() else e
    # 0: finite, 1: NaN, 2: +inf, 3: -inf
    kind_a, kind_e = (
        x.isnan().long() + 2 * x.isposinf().long() + 3 * x.isneginf().long() for x in (a, e)
    )
    differ = (kind_a != kind_e).reshape(-1)
    if differ.any():
        flat = int(differ.nonzero()[0])
        ctx.fail(
            what,
            f"element {element_index(a, flat)}: expected {e.reshape(-1)[flat].item()!r}, "
            f"actual {a.reshape(-1)[flat].item()!r} ({int(differ.sum())} elements differ in "
            "their non-finite pattern)",
        )


def _compare_bad(ctx, t: int, pa, pe, oa, oe, bound, ignore) -> float:
    """After a step both took: ``bound`` (bitwise contract) judges every element; ``None``
    (ulp contract) only the non-finite pattern of params and state tensors."""
    at = f"step {t + 1}" if t >= 0 else "start"
    worst = 0.0
    # group hyperparameters here, not in compare_states: bad ones are NaN or hold tensors
    groups_a, groups_e = oa.state_dict()["param_groups"], oe.state_dict()["param_groups"]
    for k, (ga, ge) in enumerate(zip(groups_a, groups_e, strict=True)):
        for key in sorted(set(ge) & set(ga) - set(ignore) - {"params"}):
            if not _equal(ga[key], ge[key]):
                ctx.fail(f"{at}, param_groups[{k}][{key!r}]", f"{ga[key]!r} != {ge[key]!r}")
    ignore = {*ignore, *(key for g in groups_e for key in g)}
    for i, (x, y) in enumerate(zip(pa, pe, strict=True)):
        if bound is None:
            assert_same_nonfinite(ctx, f"{at}, param {i}", x, y)
        else:
            worst = max(worst, assert_ulp(ctx, f"{at}, param {i}", x, y, bound))
    worst = max(worst, compare_states(ctx, t, oa, oe, math.inf if bound is None else bound, ignore))
    if bound is None:
        worst = 0.0  # distances on bad input are not reported under the ulp contract
        sa, se = oa.state_dict()["state"], oe.state_dict()["state"]
        for i, state in se.items():
            for key, ve in state.items():
                if isinstance(ve, Tensor) and isinstance(sa[i][key], Tensor):
                    assert_same_nonfinite(ctx, f"{at}, state[{i}][{key!r}]", sa[i][key], ve)
    return worst


@explained
def errors_like_reference(subject, case: Case, defaults: dict | None = None) -> float:
    """Bad input (``conformance.bad_input``: hyperparameters outside the domain, non-finite
    gradients) on the subject and on torch.optim's class from the same state. Where the
    reference raises (at construction or at a step), the subject must raise the same exception
    class with the same message; where it does not, the subject must propagate like it: same
    NaN positions, same infinities with the same signs in params and state (``bitwise``
    contract: every element bit for bit, within ``entry.torch_ulp``; ``ulp`` contract: finite
    elements are not judged). A step the subject refuses changes no param and no state, bit for
    bit, unless torch's refused step changes them too: then the subject must end where torch
    ends (torch 2.13 raises "value cannot be converted to type float without overflow" for a
    hyperparameter such as lr=1e300 on float32 params *after* it has counted the step and
    updated some state; a subject that leaves everything unchanged passes too). A bitwise
    subject compared with another torch path than its own is not judged on which inputs it
    refuses; the ``ulp`` contract's reference is the for-loop path, and there any difference
    counts, except for a fused subject (torch's fused path refuses other inputs).
    ``defaults``: constructor arguments of both optimizers (a bad hyperparameter passed where
    torch's constructor validates it)."""
    defaults = dict(defaults or {})
    reference = torch_reference(subject)
    ref_foreach = subject.reference_foreach(case)
    path = "foreach" if ref_foreach else "for-loop"
    built_with = f", both constructed with {defaults}" if defaults else ""
    ctx = _BadInputContext(
        "errors",
        subject,
        case,
        f"torch.optim.{subject.entry.torch_name} ({path} path){built_with}",
        defaults=defaults,
    )
    shown = bad_input.case_as_source(case)
    ctx.runs = (
        repro.run_of(subject, case.foreach, shown),
        repro.run_of(reference, ref_foreach, shown),
    )
    for r in ctx.runs:
        r["kwargs"].update(bad_input.as_source(defaults))
    own_foreach = case.foreach if subject.takes_foreach else subject.kwargs.get("foreach")
    # A fused subject runs another path than its for-loop reference, and torch's own fused
    # path refuses other inputs than its for-loop path (finding 4): which inputs it refuses is
    # not judged here (tests/test_impl_fused.py pins impl's to torch's fused path); how it
    # propagates NaN and infinity where both accept still is.
    judged = not subject.kwargs.get("fused") and (
        not subject.bitwise or same_path(own_foreach, ref_foreach)
    )
    bound = subject.entry.torch_ulp.get(case.dtype, 0) if subject.bitwise else None
    # a NaN hyperparameter is never == itself: both sides hold the case's value, or raised
    ignore = subject.own_flags
    pa, pe = case.make_params(), case.make_params()

    def build(side, params, foreach):  # fresh tensors for tensor hyperparameters, per side
        side = dataclasses.replace(side, kwargs={**side.kwargs, **bad_input.materialize(defaults)})
        return side.build(bad_input.materialize_case(case), params, foreach=foreach)

    worst = 0.0
    try:
        oa, err_a = attempt(lambda: build(subject, pa, case.foreach))
        oe, err_e = attempt(lambda: build(reference, pe, ref_foreach))
        same_error(ctx, "construction", err_a, err_e, judged)
        worst = _compare_bad(ctx, -1, pa, pe, oa, oe, bound, ignore)
        for t in range(case.steps):
            before, before_e = _snapshot(pa, oa), _snapshot(pe, oe)
            _, err_a = attempt(lambda t=t: case.step(oa, pa, t))
            _, err_e = attempt(lambda t=t: case.step(oe, pe, t))
            try:
                same_error(ctx, f"step {t + 1}", err_a, err_e, judged)
            except BothRaised:
                change = _change(before, pa, oa)
                if change is not None and _change(before_e, pe, oe) is None:
                    where, what = change
                    ctx.fail(
                        f"step {t + 1} (refused), {where}",
                        f"{what} by a step that raised {err_a!r} "
                        "(the reference's refused step changed nothing)",
                    )
                if change is not None:  # torch's own refused step changed state too: no more
                    _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore)
                raise
            worst = max(worst, _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore))
    except BothRaised:
        pass
    return worst
