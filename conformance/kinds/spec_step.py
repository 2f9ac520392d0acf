"""One param's step judged against the spec: the part the ``spec`` checks and the ``errors``
check (non-finite gradients under the ``ulp`` contract) share. The allowance per element is the
automatic bound derived from the spec (``conformance.bounds.automatic``), or the hand-derived
torch-order bound where that is tighter for a subject that runs torch's op order."""

from __future__ import annotations

import numpy as np

from conformance.bounds import automatic, torch_order
from conformance.core.case import Case, Sparse, to_numpy
from conformance.core.judge import assert_scaled


def spec_state(state: dict) -> dict:
    return {k: (float(v) if k == "step" else to_numpy(v)) for k, v in state.items()}


def untouched_by(case: Case, t: int, i: int):
    """Mask of param ``i``'s elements its step-``t`` sparse gradient does not name (None: dense)."""
    g = case.grads[t][i]
    return ~g.touched(case.shape(i)) if isinstance(g, Sparse) else None


def assert_untouched_kept(ctx, what: str, actual, before, exact, untouched) -> None:
    """Where a sparse gradient names no element and the exact step keeps its value (Adagrad's
    untouched rows, SGD's without momentum; ``exact=None``: every element not named, as
    SparseAdam promises), the subject keeps it bit for bit: a ULP bound there would let a
    kernel that rewrites every row pass."""
    if untouched is None:
        return
    actual = np.asarray(actual, np.float64)
    before = np.broadcast_to(np.asarray(before, np.float64), actual.shape)
    kept = untouched if exact is None else untouched & (np.asarray(exact) == before)
    same = (actual == before) & (np.signbit(actual) == np.signbit(before))
    moved = kept & ~(same | np.isnan(actual) & np.isnan(before))
    if moved.any():
        idx = tuple(int(k) for k in np.argwhere(moved)[0])
        ctx.fail(
            what,
            f"element {idx}, which the sparse gradient does not name, changed "
            f"{before[idx]!r} -> {np.asarray(actual)[idx]!r}",
        )


def judge_step(ctx, subject, group, spec_hyper, dtype, where, inputs, actual, untouched) -> float:
    """One param's step vs ``spec.step_exact`` from ``inputs`` ("param", "grad" and the starting
    state): every output within its allowance (``allowances``) of the exact value correctly
    rounded, ``step`` exactly. ``untouched``: the elements a sparse gradient does not name
    (``assert_untouched_kept``); an optimizer that takes only sparse gradients (SparseAdam) is
    judged on the named elements only, its spec being the rule for those."""
    entry, (spec, hyper) = subject.entry, spec_hyper
    state_before = {k: v for k, v in inputs.items() if k not in ("param", "grad")}
    exact = spec.step_exact(inputs["param"], inputs["grad"], state_before, hyper, dtype)
    allowances = element_allowances(subject, group, spec_hyper, dtype, inputs, exact)
    rows_only = untouched is not None and entry.sparse_grads == "always"
    worst = 0.0
    for key, value in exact.items():
        if key not in actual:
            ctx.fail(f"{where} state", f"missing {key!r} (has {sorted(actual)})")
        if key == "step":
            if actual["step"] != value:
                ctx.fail(f"{where} state 'step'", f"{actual['step']} != {value}")
            continue
        what = where if key == "param" else f"{where} state {key!r}"
        ref = inputs[key] if key == "param" else state_before.get(key, 0.0)
        assert_untouched_kept(ctx, what, actual[key], ref, None if rows_only else value, untouched)
        got = actual[key]
        bound, absolute, source = allowances[key]
        if rows_only:  # the named elements, as a flat array
            named = ~untouched
            got, value, ref, bound, absolute = (
                np.broadcast_to(np.asarray(x, np.float64), named.shape)[named]
                for x in (got, value, ref, bound, absolute)
            )
        w = assert_scaled(
            ctx,
            what,
            got,
            value,
            ref,
            spec.output_dtype(key, dtype),
            bound,
            absolute,
            source=source,
        )
        worst = max(worst, w)
    return worst


def reads_torch_order(subject) -> bool:
    """The hand-derived bounds count the op sequence of torch.optim's class and impl's (which
    mirrors it): only those subjects may be judged by them."""
    return subject.cls is subject.entry.reference or subject.cls is subject.entry.impl


def element_allowances(subject, group, spec_hyper, dtype, inputs, exact) -> dict:
    """Per output: ``(bound, absolute, source)`` for ``assert_scaled``. The automatic bound
    (``conformance.bounds.automatic``, derived from the spec for any implementation) judges;
    for torch's and impl's classes the hand-derived torch-order bound judges each element where
    it is tighter. Where the walker has no rule (complex dtypes, an unsupported node) or its
    bound is not finite at an element, the torch-order bound judges there, and for torch's and
    impl's classes where an intermediate of torch's order overflows (``BEYOND_AUTOMATIC``)."""
    entry, (spec, hyper) = subject.entry, spec_hyper
    state_before = {k: v for k, v in inputs.items() if k not in ("param", "grad")}
    hand = entry.spec_bound(group, inputs, dtype)
    underflow = dict(entry.spec_underflow(group, inputs, exact, dtype))
    # elements where an intermediate of torch's op order overflows, which the automatic model
    # (no overflow) does not describe
    beyond = underflow.pop(torch_order.BEYOND_AUTOMATIC, {})
    try:
        auto = automatic.allowance(
            spec, inputs["param"], inputs["grad"], state_before, hyper, dtype, exact
        )
    except automatic.Unsupported:
        auto = {}
    out = {}
    for key, value in exact.items():
        if key == "step":
            continue
        hand_bound, hand_absolute = hand[key], underflow.get(key, 0.0)
        if key not in auto:
            out[key] = (hand_bound, hand_absolute, "torch-order")
            continue
        before = inputs["param"] if key == "param" else state_before.get(key, 0.0)
        spacing = automatic.scale_spacing(value, before, spec.output_dtype(key, dtype))
        shape = np.shape(value)
        hand_bound, hand_absolute = (
            np.broadcast_to(np.asarray(x, np.float64), shape) for x in (hand_bound, hand_absolute)
        )
        ours = auto[key]
        mine = ours.total(spacing)
        theirs = hand_bound + hand_absolute / spacing
        use_hand = ~np.isfinite(mine)
        if reads_torch_order(subject):
            use_hand |= (theirs < mine) | np.broadcast_to(beyond.get(key, False), shape)
        source = (
            "torch-order"
            if use_hand.all()
            else "automatic"
            if not use_hand.any()
            else "automatic; torch-order where tighter"
        )
        out[key] = (
            np.where(use_hand, hand_bound, ours.ulps),
            np.where(use_hand, hand_absolute, ours.absolute),
            source,
        )
    return out
