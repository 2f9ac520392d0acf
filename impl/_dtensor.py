"""DTensor params (FSDP2) for the optimizers whose update is not elementwise (Adafactor's row and
column means and RMS, Muon's Newton-Schulz matrix products, LBFGS's flat vector): each rank
gathers the full tensors, runs the unsharded update, bit for bit what one process computes, and
keeps its own shard.
The elementwise classes need none of this: they run on each rank's local shard
(``impl._base``)."""

from __future__ import annotations

from torch import Tensor

from impl._ops import is_dtensor


def full(t):
    """The whole tensor on every rank (a collective for a sharded DTensor)."""
    return t.full_tensor() if is_dtensor(t) else t


def keep_own_shard(t, whole: Tensor) -> None:
    """Write this rank's part of ``whole`` into the DTensor ``t`` (a plain tensor was updated in
    place already)."""
    if is_dtensor(t):
        from torch.distributed.tensor import distribute_tensor

        own = distribute_tensor(whole, t.device_mesh, t.placements, src_data_rank=None)
        t.to_local().copy_(own.to_local())


def laid_out_as(value: Tensor, p, *, replicated: bool = False):
    """A full-size tensor as a DTensor laid out as the DTensor ``p`` (or replicated on its
    mesh); no communication."""
    from torch.distributed.tensor import Replicate, distribute_tensor

    placements = [Replicate()] * p.device_mesh.ndim if replicated else p.placements
    return distribute_tensor(value, p.device_mesh, placements, src_data_rank=None)
