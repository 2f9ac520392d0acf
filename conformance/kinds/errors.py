"""The ``errors`` check: bad input (``conformance.bad_input``) on the subject and on torch.optim.

Where the reference raises, the subject raises alike; where it does not, it propagates NaN and
infinity alike; a step it refuses changes nothing.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from hypothesis import reject
from torch import Tensor

import specs
from conformance import bad_input
from conformance.core import repro
from conformance.core.case import Case, real_dtype, to_numpy
from conformance.core.judge import (
    BothRaised,
    ConformanceError,
    Context,
    assert_ulp,
    element_index,
    explained,
)
from conformance.core.running import attempt, compare_states, same_error, same_path
from conformance.kinds import spec_step
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
    """The bits of the params and of every state_dict tensor (other state values as copies).
    An empty state entry holds nothing: ``state = self.state[p]`` on a defaultdict creates one
    before a step validates its input, as torch's own classes do, and that changes nothing."""
    state = {
        i: {k: _bits(v) if isinstance(v, Tensor) else copy.deepcopy(v) for k, v in s.items()}
        for i, s in opt.state_dict()["state"].items()
        if s
    }
    return [_bits(p) for p in params], state


def _change(before: tuple, params: list[Tensor], opt, zeros_are_fresh=False) -> tuple | None:
    """The first param or state entry that differs from the snapshot ``before``, bit for bit
    (NaNs included), as (where, what), or None. ``zeros_are_fresh`` (the ulp contract): a state
    entry that appeared holding only zeros (step 0, zero moments: the state a first step starts
    from, which torch's classes set up before their update validates its input) changes nothing
    the math can see."""
    params_before, state_before = before
    params_after, state_after = _snapshot(params, opt)
    for i, (x, y) in enumerate(zip(params_after, params_before, strict=True)):
        if not torch.equal(x, y):
            return f"param {i}", "changed"
    if zeros_are_fresh:
        state_after = {
            i: s for i, s in state_after.items() if i in state_before or not _all_zero(s)
        }
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


def _all_zero(entry: dict) -> bool:
    """Every value of a snapshot state entry is zero (as bits: -0.0 is not a fresh zero)."""
    return all(bool((v == 0).all()) if isinstance(v, Tensor) else v == 0 for v in entry.values())


def assert_same_nonfinite(ctx: Context, what: str, actual: Tensor, expected: Tensor) -> None:
    """NaN where the expected tensor has NaN, and infinities of the same sign where it has
    infinities; finite values are not compared (``assert_ulp`` with ``bound=inf`` judges
    nothing, NaN against a number included)."""
    for attr in ("dtype", "shape", "device"):
        if getattr(actual, attr) != getattr(expected, attr):
            ctx.fail(what, f"{attr} {getattr(actual, attr)} != expected {getattr(expected, attr)}")
    # a sparse state (SGD's momentum buffer) as its dense form: isnan() keeps the sparse
    # layout, and sparse tensors have no != (NotImplementedError on the SparseCPU backend)
    a, e = (x.detach().cpu() for x in (actual, expected))
    a, e = (x.coalesce().to_dense() if x.is_sparse else x for x in (a, e))
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
    gradients) on the subject and on torch.optim's class from the same state.

    ``bitwise`` contract (torch is the oracle): where the reference raises (at construction or
    at a step), the subject must raise the same exception class with the same message; where it
    does not, the subject must propagate like it: same NaN positions, same infinities with the
    same signs in params and state, every element bit for bit within ``entry.torch_ulp``. A
    bitwise subject compared with another torch path than its own is not judged on which inputs
    it refuses.

    ``ulp`` contract (the spec is the oracle; ``_judge_ulp``): refusals are judged by
    ``_refusal`` (the subject refuses where torch's for-loop path refuses, with an exception of
    the ``REFUSALS`` family, message reported, not judged; it may refuse more, but only input
    outside the spec's domain) and accepted steps by the spec over the extended reals
    (``_judge_by_spec``); torch's own values are reported beside the verdict. A fused subject
    is not judged on which inputs it refuses (torch's fused path refuses other inputs than its
    for-loop path, finding 4), only on what it computes where both accept.

    Both contracts: a step the subject refuses changes no param and no state, bit for bit,
    unless torch's refused step changes them too (torch 2.13 raises "value cannot be converted
    to type float without overflow" for a hyperparameter such as lr=1e300 on float32 params
    *after* it has counted the step and updated some state): then the bitwise subject must end
    where torch ends or change nothing (a fresh zero state aside), and the ulp subject is not
    judged on it.
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
    pa, pe = case.make_params(), case.make_params()

    def build(side, params, foreach):  # fresh tensors for tensor hyperparameters, per side
        side = dataclasses.replace(side, kwargs={**side.kwargs, **bad_input.materialize(defaults)})
        return side.build(bad_input.materialize_case(case), params, foreach=foreach)

    subject_run = (lambda: build(subject, pa, case.foreach), pa)
    reference_run = (lambda: build(reference, pe, ref_foreach), pe)
    if not subject.bitwise:
        return _judge_ulp(ctx, case, defaults, subject_run, reference_run, judged)
    bound = subject.entry.torch_ulp.get(case.dtype, 0)
    # a NaN hyperparameter is never == itself: both sides hold the case's value, or raised
    ignore = subject.own_flags
    worst = 0.0
    try:
        oa, err_a = attempt(subject_run[0])
        oe, err_e = attempt(reference_run[0])
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
                    _fail_changed(ctx, t, change, err_a)
                # torch's own refused step changed state too: the subject ends where torch
                # ends, or loses nothing (a fresh zero state aside: impl's Adamax validates
                # eps before it counts the step, torch's foreach path after)
                if change is not None and _change(before, pa, oa, zeros_are_fresh=True):
                    _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore)
                raise
            worst = max(worst, _compare_bad(ctx, t, pa, pe, oa, oe, bound, ignore))
    except BothRaised:
        pass
    return worst


def _fail_changed(ctx, t: int, change: tuple[str, str], err, torch_changed: str = "") -> None:
    where, what = change
    ctx.fail(
        f"step {t + 1} (refused), {where}",
        f"{what} by a step that raised {err!r} "
        + (torch_changed or "(the reference's refused step changed nothing)"),
    )


# -- the ulp contract: the spec judges ------------------------------------------------------------

# What a refusal may raise under the ulp contract: Python's exceptions for a bad argument
# (ValueError, TypeError) and torch's (RuntimeError, NotImplementedError among them). An
# AssertionError, KeyError or IndexError is a crash on input the subject did not anticipate.
REFUSALS = (ValueError, TypeError, RuntimeError)


def _judge_ulp(ctx, case: Case, defaults: dict, subject_run, reference_run, judged) -> float:
    """The ``ulp`` contract's errors check: build and step both sides; the first refusal ends
    the case (``_refusal``); each step both take is judged by the spec (``_judge_by_spec``), or,
    for an entry without an elementwise spec (Adafactor, Muon, LBFGS: nothing to evaluate
    element by element), by torch's non-finite pattern (``_compare_bad``)."""
    (build_a, pa), (build_e, pe) = subject_run, reference_run
    oa, err_a = attempt(build_a)
    oe, err_e = attempt(build_e)
    if _refusal(ctx, "construction", err_a, err_e, case, defaults, judged):
        return 0.0
    by_spec = ctx.entry.elementwise and ctx.entry.spec_bound is not None
    bounded = by_spec and _within_bound_applies(ctx.entry, case, defaults)
    worst = 0.0
    for t in range(case.steps):
        before, before_e = _snapshot(pa, oa), _snapshot(pe, oe)
        inputs = _step_inputs(case, t, pa, oa) if by_spec else None
        _, err_a = attempt(lambda t=t: case.step(oa, pa, t))
        _, err_e = attempt(lambda t=t: case.step(oe, pe, t))
        if _refusal(ctx, f"step {t + 1}", err_a, err_e, case, defaults, judged):
            # only a step the subject refused must change nothing: one it took where torch
            # refused input the spec defines moved the param as the spec says
            change = None if err_a is None else _change(before, pa, oa, zeros_are_fresh=True)
            if change is not None and (err_e is None or _change(before_e, pe, oe) is None):
                torch_did = "(torch.optim accepted the step)" if err_e is None else ""
                _fail_changed(ctx, t, change, err_a, torch_did)
            return worst
        if case.skipped(t):  # GradScaler found an inf: the spec check judges the skip
            continue
        if by_spec:
            w = _judge_by_spec(ctx, case, t, inputs, (pa, oa), (pe, oe), bounded)
        else:
            w = _compare_bad(ctx, t, pa, pe, oa, oe, None, ctx.subject.own_flags)
        worst = max(worst, w)
    return worst


def _refusal(ctx, at: str, err_a, err_e, case: Case, defaults: dict, judged: bool) -> bool:
    """Whether either side raised (then the case ends), after judging the subject's refusal:
    where torch refuses, the subject refuses too, with an exception of the ``REFUSALS`` family
    (its message is shown, not compared: it is the subject's own wording). Where torch accepts
    and the subject refuses, that is stricter validation, which a user expects of input outside
    the spec's domain (a negative decay rate, a tensor where a number is documented: torch's
    for-loop path takes some of those by accident of broadcasting, impl's foreach path refuses
    them as torch's foreach path does) and not of input the spec defines (an lr of 1.5, a
    non-finite gradient: the spec says what the step gives): ``_outside_domain`` decides.
    Where torch refuses input the spec defines (lr=1e300 on float16 params: torch cannot convert
    it into its scalar type), the subject may refuse it too or accept it, and the case ends
    there: the dtype it computes in may not hold the value either (a float32 lr of inf times
    a zero moment is NaN). So does a 1-element tensor where a number is documented: torch
    refuses eps=torch.tensor([0.1]) on a 0-d param only (the in-place broadcast), which is no
    contract a subject could follow. The exception torch itself raises is accepted whatever its
    class (torch's IndexError for betas given as a 1-element tensor)."""
    if err_a is None and err_e is None:
        return False
    if not judged:
        reject()  # a fused path refuses other inputs than torch's for-loop path (finding 4)
    torch_did = f"torch.optim raised {err_e!r}" if err_e is not None else "torch.optim accepted it"
    if err_a is None:
        if _outside_domain(ctx.entry, case, defaults) is None or _holds_tensor(case, defaults):
            return True  # torch cannot compute what the spec defines (lr=1e300 in float16)
        if not isinstance(err_e, REFUSALS):
            return True  # torch's arithmetic crashed (1 - beta1**2 = 0 for beta1 = -1): no refusal
        ctx.fail(at, f"accepted input that torch.optim refuses: raised None, expected {err_e!r}")
    if not isinstance(err_a, REFUSALS) and type(err_a) is not type(err_e):
        ctx.fail(
            at,
            f"raised {err_a!r}, which is not a refusal (expected a ValueError, TypeError or "
            f"RuntimeError; {torch_did})",
        )
    if err_e is None and _outside_domain(ctx.entry, case, defaults) is None:
        ctx.fail(
            at,
            f"raised {err_a!r} on input the spec defines and torch.optim accepts (a stricter "
            "validation is accepted outside the spec's domain only)",
        )
    return True


def _holds_tensor(case: Case, defaults: dict) -> bool:
    """Whether a hyperparameter is a tensor (``bad_input.TENSORS``, kept as source text)."""
    values = [v for g in case.groups for v in g.values()] + list(defaults.values())
    flat = [x for v in values for x in (v if isinstance(v, tuple | list) else (v,))]
    return any(isinstance(x, str) and x in bad_input.TENSORS for x in flat)


def _plain(value) -> bool:
    """A number, a flag, or a tuple of them (not a string, None or a tensor's source text)."""
    if isinstance(value, tuple | list):
        return all(_plain(v) for v in value)
    return isinstance(value, bool | int | float)


@functools.cache
def _in_domain(domain, value: float) -> bool:
    return math.isfinite(value) and bool(domain.contains(value))


def _poisoned(case: Case) -> bool:
    """Whether any drawn gradient holds NaN or an infinity (a ``nonfinite_grads`` case)."""
    return any(
        not np.isfinite(bad_input.stored_values(g)).all()
        for step in case.grads
        for g in step
        if g is not None
    )


def _outside_domain(entry, case: Case, defaults: dict) -> str | None:
    """Why the case's hyperparameters are outside the spec's domain (a value that is no number,
    or one outside its ``Hyper.domain``, torch's validation domain), or None. An entry without an
    elementwise spec has no domain here: any case whose gradients are finite counts (its drawn
    hyperparameter is the bad input)."""
    for group in case.groups:
        values = {k: v for k, v in {**group, **defaults}.items() if k != "params"}
        for key, value in values.items():
            if not _plain(value):
                return f"{key}={value!r} is not a number"
        if not entry.elementwise or entry.spec_bound is None:
            return None if _poisoned(case) else "a bad hyperparameter (no spec domain to check)"
        spec, hyper = specs.for_group(entry.torch_name, values)
        for h in spec.hypers:
            if not _in_domain(h.domain, hyper[h.name]):
                return f"{h.name}={hyper[h.name]!r} is outside {h.domain}"
    return None


def _within_bound_applies(entry, case: Case, defaults: dict) -> bool:
    """Whether the finite elements are judged within ``entry.spec_bound`` too, not only as
    finite: the derived bound is a theorem on the spec purposes' well-conditioned domain only,
    which is where ``bad_input.nonfinite_grads`` draws under the ulp contract
    (``bad_input.spec_purpose``). A bad-hyperparameter case is drawn from torch's whole domain
    around its bad value, so there the class of each element (finite, +inf, -inf, NaN) is
    judged, not its rounding."""
    return _poisoned(case) and not defaults and _outside_domain(entry, case, {}) is None


def _step_inputs(case: Case, t: int, params: list[Tensor], opt) -> list[dict]:
    """Each param's step inputs before step ``t``: "param", "grad" (None: no gradient) and its
    state, as float64 arrays (as ``vs_spec`` reads them)."""
    grads = case.make_grads(t)
    return [
        {
            "param": to_numpy(p),
            "grad": None if g is None else case.unscaled(to_numpy(g)),
            **(spec_step.spec_state(opt.state[p]) if p in opt.state else {}),
        }
        for p, g in zip(params, grads, strict=True)
    ]


def _judge_by_spec(ctx, case: Case, t: int, inputs, subject_side, torch_side, bounded) -> float:
    """Step ``t`` of every param that had a gradient vs ``spec.step_exact`` from the subject's
    own inputs, over the extended reals (mpmath's inf and nan: inf - inf, 0*inf and inf/inf
    are nan), as ``_assert_extended`` judges each element; then every output through
    ``spec_step.judge_step`` (state keys, the step count, a sparse gradient's untouched elements,
    and, where ``bounded``, the elements no non-finite input reaches within the derived bound,
    as the spec check judges them; the others' class was judged)."""
    (pa, oa), (pe, oe) = subject_side, torch_side
    subject, dtype = ctx.subject, real_dtype(case.torch_dtype)
    worst = 0.0
    for group in oa.param_groups:
        try:
            spec_hyper = specs.for_group(ctx.entry.torch_name, group)
        except (TypeError, ValueError, RuntimeError):
            continue  # a hyperparameter that is no number (both took it): the spec says nothing
        spec, hyper = spec_hyper
        for p in group["params"]:
            i = next(j for j, q in enumerate(pa) if q is p)
            given = inputs[i]
            if given["grad"] is None:
                continue
            where = f"step {t + 1}, param {i}"
            state_before = {k: v for k, v in given.items() if k not in ("param", "grad")}
            exact = spec.step_exact(given["param"], given["grad"], state_before, hyper, dtype)
            also = _also_the_math(spec, hyper, dtype, given)
            also = [
                form.step_exact(given["param"], given["grad"], state_before, values, dtype)
                for form, values in also
            ]
            undefined = _outside_spec_domain(spec, hyper)
            overflows = _may_overflow(given, hyper, dtype)
            actual = {"param": to_numpy(p), **spec_step.spec_state(oa.state.get(p, {}))}
            theirs = {"param": to_numpy(pe[i]), **spec_step.spec_state(oe.state.get(pe[i], {}))}
            untouched = spec_step.untouched_by(case, t, i)
            nan_reached = _reached_by_nan(given)
            wrong = [
                _wrong_class(
                    key,
                    actual[key],
                    value,
                    theirs.get(key),
                    None if untouched is None else (given.get(key, 0.0), untouched),
                    [other.get(key) for other in also],
                    undefined,
                    (given.get(key, 0.0), nan_reached),
                    overflows,
                )
                for key, value in exact.items()
                if key != "step" and key in actual
            ]
            if any(wrong):  # every output of the wrong class, torch's values beside them
                ctx.fail(where, "; ".join(w for w in wrong if w))
            # the elements no non-finite input reaches, as flat arrays (the rule is elementwise):
            # within the derived bound, which assumes finite inputs, as the spec check judges
            kept = _unreached(given)
            if not bounded or not kept.any():  # the class of every element was all to judge
                missing = exact.keys() - actual.keys()
                if missing:
                    ctx.fail(f"{where} state", f"missing {sorted(missing)} (has {sorted(actual)})")
                continue
            w = spec_step.judge_step(
                ctx,
                subject,
                group,
                spec_hyper,
                dtype,
                f"{where} (the {int(kept.sum())} elements no non-finite input reaches)",
                _part(given, kept),
                _part(actual, kept),
                None if untouched is None else untouched[kept],
            )
            worst = max(worst, w)
    return worst


def _unreached(inputs: dict) -> np.ndarray:
    """Mask of the param's elements whose every input (param, gradient, state) is finite."""
    shape = np.shape(inputs["param"])
    kept = np.ones(shape, bool)
    for value in inputs.values():
        a = np.asarray(np.nan if value is None else value, np.float64)
        kept &= np.isfinite(a) if a.shape == shape else bool(np.isfinite(a).all())
    return kept


def _may_overflow(inputs: dict, hyper: dict, dtype) -> np.ndarray:
    """Mask of the elements where a hyperparameter times an input exceeds the dtype's range
    (lr = 1e300 times a gradient of 1e9): an op order that forms that product first (torch's
    lr * m_hat, a textbook's) overflows where the spec's order does not."""
    shape = np.shape(inputs["param"])
    largest = np.zeros(shape)
    for value in inputs.values():
        if value is not None:
            a = np.abs(np.asarray(value, np.float64))
            largest = np.fmax(largest, a if a.shape == shape else np.nanmax(a, initial=0.0))
    scale = max((abs(float(v)) for v in hyper.values() if math.isfinite(float(v))), default=0.0)
    with np.errstate(over="ignore", invalid="ignore"):
        return largest * scale > torch.finfo(dtype).max


def _reached_by_nan(inputs: dict) -> np.ndarray:
    """Mask of the param's elements a NaN input (param, gradient, state) reaches."""
    shape = np.shape(inputs["param"])
    reached = np.zeros(shape, bool)
    for value in inputs.values():
        a = np.asarray(np.nan if value is None else value, np.float64)
        reached |= np.isnan(a) if a.shape == shape else bool(np.isnan(a).any())
    return reached


def _part(values: dict, kept: np.ndarray) -> dict:
    """Each per-element array at the ``kept`` elements (flat); per-tensor values as they are."""
    return {
        k: np.asarray(v)[kept] if np.shape(v) == kept.shape and np.ndim(v) else v
        for k, v in values.items()
    }


def _same_class(a: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Both finite, or both not finite and not infinities of opposite signs."""
    return (np.isfinite(a) == np.isfinite(e)) & ~(np.isinf(a) & np.isinf(e) & (a != e))


_CLASSES = ("finite", "NaN", "+inf", "-inf")


def _class(x: np.ndarray) -> np.ndarray:
    return np.isnan(x) + 2 * np.isposinf(x) + 3 * np.isneginf(x)


def _also_the_math(spec, hyper: dict, dtype, given: dict) -> list[tuple]:
    """The other evaluations of the spec an implementation of it may compute, as (spec, hyper)
    pairs, each judged by class as the literal spec is: the spec with its zero
    hyperparameters' terms dropped (``_without_zero_terms``; only where a non-finite input
    makes the difference), and the spec with each hyperparameter held in the param's dtype
    where that changes its class (``_held_in_dtype``: docs/bounds.md's model rounds a scalar
    operand into the dtype, so lr=1e300 on float32 params is inf there, and inf times a zero
    moment is NaN where the exact product is 0)."""
    forms = []
    terse = _without_zero_terms(spec, hyper)
    if terse is not None and not _unreached(given).all():
        forms.append((terse, hyper))
    held = _held_in_dtype(spec, hyper, dtype)
    if held is not None:
        forms.append((spec, held))
    return forms


def _held_in_dtype(spec, hyper: dict, dtype) -> dict | None:
    """``hyper`` with every hyperparameter rounded into ``dtype`` (a real torch dtype), or None
    where no value changes class by it (overflow to an infinity, underflow to zero)."""
    held, changed = dict(hyper), False
    for h in spec.hypers:
        value = float(hyper.get(h.name, h.default))
        rounded = float(torch.tensor(value, dtype=torch.float64).to(dtype))
        if math.isfinite(value) and (not math.isfinite(rounded) or (value != 0) != (rounded != 0)):
            held[h.name], changed = rounded, True
    return held if changed else None


def _outside_spec_domain(spec, hyper: dict) -> bool:
    """Whether a hyperparameter lies outside its ``Hyper.domain`` (a group's own value: torch
    validates only its constructor's arguments, so eps=-1 in a param group is taken)."""
    return any(not _in_domain(h.domain, float(hyper.get(h.name, h.default))) for h in spec.hypers)


def _without_zero_terms(spec, hyper: dict):
    """The spec with every hyperparameter that is exactly 0 substituted symbolically (SymPy
    drops its terms: wd*p is 0 even where p is inf or NaN), or None where none is 0. An
    implementation that skips a zero weight decay computes this form; one that multiplies by
    the zero computes the literal one (0*inf is NaN in IEEE as in mpmath): both are the math."""
    zeros = frozenset(h.name for h in spec.hypers if hyper.get(h.name, h.default) == 0)
    if not zeros:
        return None
    key = (id(spec), zeros)  # a Spec holds dicts (unhashable); specs.for_group caches each one
    if key not in _ZERO_DROPPED:
        to_zero = {h.symbol: 0 for h in spec.hypers if h.name in zeros}

        def substitute(rules):
            return None if rules is None else tuple((t, e.xreplace(to_zero)) for t, e in rules)

        terse = dataclasses.replace(
            spec, updates=substitute(spec.updates), first_updates=substitute(spec.first_updates)
        )
        _ZERO_DROPPED[key] = (spec, terse)  # the spec kept alive: its id stays its own
    return _ZERO_DROPPED[key][1]


_ZERO_DROPPED: dict = {}


def _wrong_class(
    key: str,
    actual,
    exact,
    torch_value,
    kept=None,
    also=(),
    undefined=False,
    skipped=None,
    overflows=None,
) -> str:
    """Each element's class against the exact value's, over the extended reals: finite where
    the math is finite; not finite where it is not, and where both are infinities, of the same
    sign. NaN and an infinity stand for each other, as IEEE op orders of the same math differ
    there: torch's lerp computes m + w*(g - m) as g - (g - m)*(1 - w), NaN at g = -inf, w = 1
    where the math gives -inf; and the spec's g + wd*p is NaN at p = -inf, wd = 0 (0*inf) where
    an implementation that skips a zero weight decay keeps -inf; ``also``, the other
    evaluations of the math (``_also_the_math``: zero terms dropped, a hyperparameter held in
    the dtype), say what such implementations give, and matching one passes too.
    ``undefined``: a hyperparameter is outside the spec's domain, where the math says nothing
    (the spec's expressions are simplified on its domain: SymPy writes sqrt(x)**2 as x, so
    eps = -1 leaves a finite value where the square root is undefined): NaN, "undefined",
    passes there too. ``skipped``: (the value before the step, the elements a NaN input
    reaches): a NaN is no number of the extended reals, so the math gives no value there, and
    the subject may say so with NaN or skip the element, keeping its value (losing nothing, as
    GradScaler's skipped step does; torch's Rprop does, finding 31); another finite value is
    wrong. ``overflows``: the elements where a hyperparameter times an input is beyond the
    dtype's range (``_may_overflow``), where an infinity of the exact value's sign or NaN
    passes.
    ``kept``: the
    value before the step at the elements a sparse gradient does not name, which the subject
    may keep as they were (its step does not touch them; the dense math may: lr = nan times 0
    is NaN; a fresh state's value before is 0). Returns what is wrong ("" if nothing), with
    torch.optim's value at the element beside it, not judged."""
    a = np.asarray(actual, np.float64)
    e = np.broadcast_to(np.asarray(exact, np.float64), a.shape)
    ok = _same_class(a, e)
    for other in also:
        if other is not None:
            ok |= _same_class(a, np.broadcast_to(np.asarray(other, np.float64), a.shape))
    if undefined:
        ok |= np.isnan(a)
    if overflows is not None:
        over = np.broadcast_to(np.any(overflows), a.shape)
        if np.shape(overflows) == a.shape:
            over = overflows
        # the overflowed intermediate is an infinity; what the op order makes of it next is an
        # infinity or NaN (inf/inf: Adam's m/sqrt(v) once g = wd*p overflowed; torch's too)
        ok |= over & (np.isnan(a) | np.isinf(a) & (np.sign(a) == np.sign(e)))
    if skipped is not None:
        before, reached = skipped
        before = np.broadcast_to(np.asarray(before, np.float64), a.shape)
        if np.shape(reached) != a.shape:  # a per-tensor output (NAdam's mu_product): any
            reached = np.broadcast_to(np.any(reached), a.shape)
        same = (a == before) & (np.signbit(a) == np.signbit(before))
        ok |= np.isnan(e) & reached & same
    if kept is not None:
        before, untouched = kept
        before = np.broadcast_to(np.asarray(before, np.float64), a.shape)
        same = (a == before) & (np.signbit(a) == np.signbit(before))
        ok |= untouched & (same | np.isnan(a) & np.isnan(before))
    if ok.all():
        return ""
    flat = int(np.flatnonzero(~ok)[0])
    idx = tuple(int(k) for k in np.unravel_index(flat, a.shape)) if a.ndim else ()
    theirs = "n/a"
    if torch_value is not None and np.shape(torch_value) == a.shape:
        theirs = repr(float(np.asarray(torch_value).reshape(-1)[flat]))
    return (
        f"{key} element {idx}: exact value {e.reshape(-1)[flat]!r} "
        f"({_CLASSES[_class(e.reshape(-1)[flat])]}), actual {a.reshape(-1)[flat]!r} "
        f"({int((~ok).sum())} elements of the wrong class; torch.optim gives {theirs}, "
        "reported, not judged)"
    )
