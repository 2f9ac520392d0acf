"""Subjects whose refusals are bugs, not missing capabilities: each refuses valid input for every
dtype, so no refusal of theirs may pass as "the subject refuses <dtype>" (tests/
test_harness_refusals.py)."""

from __future__ import annotations

import impl


class RaisesOnEveryStepAdam(impl.Adam):
    """A fused Adam whose operand check has one comparison flipped: every step raises."""

    def step(self, closure=None):
        raise RuntimeError("fused Adam: every operand must have its param's size (got 1 vs 1)")


class RefusesZeroWeightDecayAdafactor(impl.Adafactor):
    """``0.0 <= weight_decay`` flipped to ``0.0 < weight_decay``: the default, 0.0, is refused."""

    def __init__(self, params, *args, weight_decay: float = 0.0, **kwargs):
        if not 0.0 < weight_decay:
            raise ValueError(f"weight_decay should be >= 0 but is: {weight_decay}")
        super().__init__(params, *args, weight_decay=weight_decay, **kwargs)
