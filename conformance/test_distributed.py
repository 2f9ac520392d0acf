"""The optimizers on DTensor params of a gloo mesh (``--device=cpu-gloo-2``; ``nox -s
distributed``): bitwise equal to torch.optim on the same layout, and to the unsharded run in
float32/float64. Hypothesis draws here; the ranks (conformance.core.gloo) only run."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import report, strategies
from conformance.checks import CHECKS
from conformance.core import gloo

DISTRIBUTED = CHECKS["distributed"]


@st.composite
def sharded_cases(draw, entry, dtype: str, tensor_lr: bool = True):
    """A case as the torch check draws it (dense gradients, contiguous params: DTensor shards
    are contiguous), dim 0 up to 2 x the world size (uneven and empty shards), and a placement
    per param; a 0-d param cannot be sharded. ``tensor_lr=False``: a subject that lacks it."""
    case = draw(
        strategies.cases(
            entry,
            dtype,
            "cpu",
            layouts=False,
            sparse=False,
            max_side=2 * gloo.WORLD_SIZE,
            tensor_lr=tensor_lr,
        ),
        label="case",
    )
    placements = tuple(
        draw(
            st.sampled_from(gloo.PLACEMENTS if case.shape(i) else ("replicate", "tensor")),
            label=f"placement {i}",
        )
        for i in range(len(case.params))
    )
    return case.replace(placements=placements)


@pytest.mark.check(DISTRIBUTED.name)
@DISTRIBUTED.settings()
@given(data=st.data())
def test_sharded_matches_torch_and_unsharded(target, data):
    tensor_lr = target.subject.takes("tensor_lr")
    case = data.draw(sharded_cases(target.entry, target.dtype, tensor_lr), label="sharded case")
    report.example(target, DISTRIBUTED.name, DISTRIBUTED(target.subject, case))
