"""The ``memory_safety`` check: a step writes nothing outside its own parameters' elements."""

from __future__ import annotations

import torch
from torch import Tensor

from conformance.core import repro
from conformance.core.case import Case, Sparse, to_tensor
from conformance.core.judge import Context, explained
from conformance.core.running import set_grads
from conformance.core.ulp import ulp_distance

GUARD = 3  # canary elements before, between and after the carved tensors
CANARY = -3.25  # exact in every dtype; any value works, only "unchanged" is checked


def carve(values: list, layouts: list[str], dtype: torch.dtype, device: str):
    """Tensors holding ``values`` as views into one shared buffer, with ``GUARD`` canary elements
    around each and, for "strided" layouts, canaries in the holes between elements too; the
    buffer's second half is canaries."""
    blocks = [to_tensor(v, dtype, device) for v in values]
    sizes = [t.numel() * (2 if layout == "strided" else 1) for t, layout in zip(blocks, layouts)]
    # as many canaries again after the last guard: a kernel that misplaces a view by its storage
    # offset (torch 2.13's dense.add_(sparse) writes at twice it) lands on canaries, not on
    # memory the process does not own
    used = GUARD + sum(n + GUARD for n in sizes)
    buffer = torch.full((2 * used,), CANARY, dtype=dtype, device=device)
    views, offset = [], GUARD
    for t, layout, n in zip(blocks, layouts, sizes):
        block = buffer[offset : offset + n]
        if layout == "strided":
            view = block.view(*t.shape[:-1], 2 * t.shape[-1])[..., ::2]
        elif layout == "transposed":
            view = block.view(*t.shape[:-2], t.shape[-1], t.shape[-2]).mT
        else:
            view = block.view(t.shape)
        view.copy_(t)
        views.append(view)
        offset += n + GUARD
    return buffer, views


def owned_elements(buffer: Tensor, views: list[Tensor]) -> Tensor:
    """Boolean mask over ``buffer``: the elements some view in ``views`` covers."""
    owned = torch.zeros(buffer.numel(), dtype=torch.bool)
    index = torch.arange(buffer.numel())
    for v in views:
        owned[index.as_strided(v.shape, v.stride(), v.storage_offset())] = True
    return owned


def _unchanged_outside(ctx, at: str, buffer: Tensor, before: Tensor, owned: Tensor) -> None:
    changed = (ulp_distance(buffer, before) != 0).reshape(buffer.numel(), -1).any(dim=1)
    stray = changed & ~owned
    if stray.any():
        k = int(stray.nonzero()[0])
        old, new = before[k].item(), buffer[k].item()
        ctx.fail(
            at, f"storage element {k}, which belongs to no parameter, changed {old!r} -> {new!r}"
        )


@explained
def memory_safety(subject, case: Case) -> float:
    """A step writes nothing outside its own parameters' elements.

    Params are views into one shared storage (strided slices, transposes, offsets) with canary
    elements around and between them; gradients likewise. After every step the canaries, the
    holes of strided params and every gradient element are bitwise unchanged.
    """
    ctx = Context("memory_safety", subject, case, "the storage before step()")
    ctx.runs = (repro.run_of(subject, case.foreach, case),)
    dtype, layouts = case.torch_dtype, [p.layout for p in case.params]
    buffer, params = carve([p.values for p in case.params], layouts, dtype, case.device)
    owned = owned_elements(buffer, params)
    opt = subject.build(case, params, foreach=case.foreach)
    for t in range(case.steps):
        # dense gradients are carved like the params; a sparse one is its own COO tensor
        present = [i for i, g in enumerate(case.grads[t]) if g is not None]
        dense = [i for i in present if not isinstance(case.grads[t][i], Sparse)]
        grad_buffer, grads = carve(
            [case.grads[t][i] for i in dense], [layouts[i] for i in dense], dtype, case.device
        )
        set_grads(params, [None] * len(params))
        for i, g in zip(dense, grads):
            params[i].grad = g
        for i in set(present) - set(dense):
            params[i].grad = case.make_grad(case.grads[t][i], i)
        before, grads_before = buffer.clone(), grad_buffer.clone()
        if case.objective is None:
            opt.step()
        else:  # the closure sets gradients of its own
            case.step(opt, params, t)
        _unchanged_outside(ctx, f"step {t + 1}, params' storage", buffer, before, owned)
        nothing = torch.zeros(grad_buffer.numel(), dtype=torch.bool)
        _unchanged_outside(
            ctx, f"step {t + 1}, gradients' storage", grad_buffer, grads_before, nothing
        )
    return 0.0
