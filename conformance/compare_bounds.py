"""The comparison table of docs/bounds.md: the automatic bound (``conformance.bounds.automatic``)
against the hand-derived torch-order bound, per rule, output and dtype, over the harness's own
spec cases. ``python -m conformance.compare_bounds --compare``. It draws cases and runs subjects,
so it sits above the checks, not beside the bounds."""

from __future__ import annotations

import sys

import numpy as np
import torch

from conformance.bounds.automatic import Unsupported, allowance, scale_spacing


def compare(dtypes=("float32", "bfloat16"), cases: int = 200) -> list[dict]:
    """Automatic vs hand-derived (torch-order) allowance on the elementwise rules: for each
    registry entry, dtype and output, the median over ``cases`` drawn spec cases (the harness's
    own strategy, derandomized) of each case's median element, in ULPs at scale (the absolute
    underflow terms converted at each element's scale), and the share of elements where the
    automatic one is the tighter."""
    from conformance import registry

    rows = []
    for entry in registry.REGISTRY:
        if entry.spec_bound is None:
            continue
        for dtype_name in dtypes:
            seen: dict[str, list] = {}

            _collector(entry, dtype_name, cases, seen)()
            for key, pairs in seen.items():
                hand, auto, tighter = (np.array([p[k] for p in pairs]) for k in range(3))
                rows.append(
                    {
                        "entry": entry.name,
                        "dtype": dtype_name,
                        "output": key,
                        "hand": float(np.median(hand)),
                        "automatic": float(np.median(auto)),
                        "tighter": float(np.mean(tighter)),
                        "cases": len(pairs),
                    }
                )
    return rows


def _collector(entry, dtype_name: str, cases: int, seen: dict):
    """A derandomized Hypothesis run over the harness's spec cases that fills ``seen``."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from conformance import strategies
    from conformance.core.case import Purpose
    from conformance.kinds.vs_spec import _steps_with_inputs
    from conformance.subject import Subject

    dtype = getattr(torch, dtype_name)

    @settings(
        max_examples=cases,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def collect(data):
        case = data.draw(
            strategies.cases(
                entry,
                dtype_name,
                "cpu",
                steps=(1, 1),
                purpose=Purpose.SPEC,
                max_params=1,
                max_side=3,
            )
        )
        for _, _, group, (spec, hyper), inputs, _ in _steps_with_inputs(
            Subject(entry.impl, entry), case
        ):
            if inputs["grad"] is not None:
                # the rules are elementwise: 16 elements keep the exact oracle fast
                inputs = {
                    k: v if np.ndim(v) == 0 else np.asarray(v, np.float64).reshape(-1)[:16]
                    for k, v in inputs.items()
                }
                _compare_step(entry, spec, hyper, group, inputs, dtype, seen)

    return collect


def _compare_step(entry, spec, hyper, group, inputs, dtype, seen) -> None:
    state = {k: v for k, v in inputs.items() if k not in ("param", "grad")}
    exact = spec.step_exact(inputs["param"], inputs["grad"], state, hyper, dtype)
    hand = entry.spec_bound(group, inputs, dtype)
    underflow = entry.spec_underflow(group, inputs, exact, dtype)
    try:
        auto = allowance(spec, inputs["param"], inputs["grad"], state, hyper, dtype, exact)
    except Unsupported:
        return
    for key, ours in auto.items():
        before = inputs["param"] if key == "param" else state.get(key, 0.0)
        s = scale_spacing(exact[key], before, spec.output_dtype(key, dtype))
        theirs = hand[key] + np.asarray(underflow.get(key, 0.0)) / s
        with np.errstate(all="ignore"):
            mine = ours.total(s)
        theirs = np.broadcast_to(theirs, np.shape(mine))
        mine = np.where(np.isfinite(mine), mine, theirs)  # the judge falls back there too
        # elements where nothing moves (exact and before both 0, S = 0) are measured in units
        # of the smallest subnormal: left out of the medians
        moving = np.broadcast_to(
            (np.asarray(exact[key]) != 0) | (np.asarray(before) != 0), np.shape(mine)
        )
        mine, theirs = mine[moving], theirs[moving]
        if np.size(mine) == 0:
            continue
        seen.setdefault(key, []).append(
            (float(np.median(theirs)), float(np.median(mine)), float(np.mean(mine < theirs)))
        )


def _table(rows) -> str:
    lines = [
        "| entry | dtype | output | torch-order (hand) | automatic | automatic tighter |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['entry']} | {row['dtype']} | `{row['output']}` | {row['hand']:.3g} "
            f"| {row['automatic']:.3g} | {100 * row['tighter']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m conformance.compare_bounds")
    parser.add_argument("--compare", action="store_true", help="print the comparison table")
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--dtypes", nargs="*", default=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if not args.compare:
        parser.print_help()
        return 2
    print(_table(compare(tuple(args.dtypes), args.cases)))
    return 0


if __name__ == "__main__":  # pragma: no cover - the comparison table of docs/bounds.md
    sys.exit(main())
