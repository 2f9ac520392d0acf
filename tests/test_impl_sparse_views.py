"""Sparse gradients into params that are views of a larger buffer (parameters packed into one
flat tensor): impl updates exactly the param's elements, bit for bit as on a standalone tensor.

torch 2.13's ``dense.add_(sparse)`` writes a contiguous view with a storage offset at twice that
offset when the sparse tensor is flagged coalesced and has no dense dims
(docs/torch-findings.md#finding-13), so torch.optim's SGD, Adagrad and SparseAdam leave the
param unchanged and write a neighbour; the last test pins that finding.
"""

from __future__ import annotations

import pytest
import torch

import impl

CLASSES = ["SGD", "Adagrad", "SparseAdam"]
DTYPES = [torch.float32, torch.float64, torch.bfloat16]
CANARY = -3.25


KINDS = ["uncoalesced", "coalesced", "one entry"]


def _gradient(step: int, dtype, kind: str, shape=(4,)):
    """Row ``step`` named twice (summed by coalescing) and row ``step + 2`` once; or ``one
    entry``, row ``step`` alone (torch flags a sparse tensor of one entry coalesced)."""
    rows = [step % shape[0], (step + 2) % shape[0], step % shape[0]]
    values = [1.0 + step, -0.5, 0.25]
    if kind == "one entry":
        rows, values = rows[:1], values[:1]
    grad = torch.sparse_coo_tensor(torch.tensor([rows]), torch.tensor(values, dtype=dtype), shape)
    return grad.coalesce() if kind == "coalesced" else grad


def _run(module, name, param, kind, steps=3):
    opt = getattr(module, name)([param], lr=0.1)
    for step in range(steps):
        param.grad = _gradient(step, param.dtype, kind)
        opt.step()
    return opt


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", CLASSES)
def test_a_view_at_an_offset_is_updated_like_a_standalone_param(name, dtype, kind):
    flat = torch.full((16,), CANARY, dtype=dtype)
    view = flat[5:9]  # contiguous, storage offset 5
    view.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    alone = view.clone()
    _run(impl, name, view, kind)
    _run(impl, name, alone, kind)
    assert torch.equal(view, alone), "the view's values differ from the standalone run"
    outside = torch.cat([flat[:5], flat[9:]])
    assert torch.equal(outside, torch.full_like(outside, CANARY)), "wrote outside the param"


@pytest.mark.parametrize("name", CLASSES)
def test_torch_writes_a_sparse_step_at_twice_the_storage_offset(name):
    """The kernel misplaces a sparse tensor flagged coalesced: one of a single entry always is
    (SGD adds the gradient as given; Adagrad and SparseAdam build their updates unflagged, so
    only a gradient naming one entry reaches it)."""
    flat = torch.zeros(12)
    view = flat[4:8]
    _run(torch.optim, name, view, "one entry", steps=1)
    assert torch.equal(view, torch.zeros(4)), "torch updated the view: the finding is fixed"
    assert flat[8] != 0, "torch's stray write is no longer at twice the offset"
