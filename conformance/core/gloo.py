"""A pool of gloo ranks in spawned CPU processes, and the DTensor plumbing they share.

The ``distributed`` check kind (``conformance.kinds.distributed``) draws a case in the pytest
process and ships it, as plain data, to a persistent ``RankPool``. The ranks never run
``@given``: each one runs a module-level function of the check on its part and sends back what it
holds (its local shard and the placements, as bytes: ``snapshot``). Every collective has the
process group's timeout, and the pool answers within ``TIMEOUT`` seconds or is torn down, so a
rank that fails or hangs fails the test instead of hanging it.

Placements (``Case.placements``, one per param):

- ``"shard"``: ``Shard(0)`` on the mesh, as ``fully_shard`` keeps params: uneven when dim 0 is not
  a multiple of the world size, and empty on a rank when dim 0 is smaller than it;
- ``"replicate"``: ``Replicate()`` (what a 0-d param can only be);
- ``"tensor"``: a plain ``torch.Tensor`` holding the same values on every rank, in the same group
  as DTensors, which torch's foreach path cannot mix (pytorch #183207).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib
import multiprocessing
import os
import shutil
import tempfile
import time
import traceback
from multiprocessing.connection import wait

import torch
from torch import Tensor

from impl._ops import is_dtensor

WORLD_SIZE = 2
DEVICE = f"cpu-gloo-{WORLD_SIZE}"
PLACEMENTS = ("shard", "replicate", "tensor")
TIMEOUT = 60.0  # seconds: each collective (the process group's timeout) and each pool call


def unavailable_reason() -> str | None:
    """Why the gloo mesh cannot run here, or None."""
    import torch.distributed as dist

    if not dist.is_available():
        return f"torch.distributed is not available in this build (torch {torch.__version__})"
    if not dist.is_gloo_available():
        return f"the gloo backend is not available in this build (torch {torch.__version__})"
    return None


class RankError(RuntimeError):
    """A rank raised, died or did not answer in time; the message carries its traceback."""


# -- the pool (pytest process side) -----------------------------------------------------------
class RankPool:
    """``world_size`` gloo ranks in spawned processes, kept for many calls.

    ``call(fn, *args)`` runs the module-level function ``fn(*args)`` on every rank and returns the
    ranks' results in rank order. On any error or timeout the pool is closed (its processes
    killed) and ``RankError`` raised; a closed pool restarts on the next call, so one failing
    example does not poison the ones after it.
    """

    def __init__(self, world_size: int = WORLD_SIZE, timeout: float = TIMEOUT):
        self.world_size, self.timeout = world_size, timeout
        self._procs: list = []
        self._conns: list = []
        self._dir: str | None = None

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._dir = tempfile.mkdtemp(prefix="verified-optim-gloo-")
        init_method = f"file://{os.path.join(self._dir, 'store')}"
        for rank in range(self.world_size):
            parent, child = context.Pipe()
            proc = context.Process(
                target=_rank_main,
                args=(rank, self.world_size, init_method, self.timeout, child),
                name=f"gloo-rank-{rank}",
                daemon=True,
            )
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)
        self._gather(_ready, ())

    def call(self, fn, *args) -> list:
        if not self._procs:
            self._start()
        return self._gather(fn, args)

    def _gather(self, fn, args) -> list:
        job = (fn.__module__, fn.__qualname__, args)
        for conn in self._conns:
            conn.send(job)
        results: dict[int, object] = {}
        deadline = time.monotonic() + self.timeout
        while len(results) < self.world_size:
            pending = [c for r, c in enumerate(self._conns) if r not in results]
            ready = wait(pending, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                ranks = sorted(set(range(self.world_size)) - set(results))
                self.close()
                raise RankError(f"ranks {ranks} did not answer {fn.__name__} in {self.timeout} s")
            for conn in ready:
                rank = self._conns.index(conn)
                try:
                    kind, value = conn.recv()
                except EOFError:
                    self.close()
                    raise RankError(f"rank {rank} died during {fn.__name__}") from None
                if kind == "error":
                    self.close()
                    raise RankError(f"rank {rank} raised in {fn.__name__}:\n{value}")
                results[rank] = value
        return [results[r] for r in range(self.world_size)]

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):  # a rank that died has closed its end
                conn.send(None)
        for proc in self._procs:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._procs, self._conns = [], []
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


_POOL: RankPool | None = None


def pool() -> RankPool:
    """The process's pool, started on first use (a replayed snippet starts one too)."""
    global _POOL
    if _POOL is None:
        _POOL = RankPool()
    return _POOL


def close_pool() -> None:
    if _POOL is not None:
        _POOL.close()


# -- the ranks ------------------------------------------------------------------------------------
def _rank_main(rank: int, world_size: int, init_method: str, timeout: float, conn) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)  # the ranks share the machine's cores with the pytest process
    dist.init_process_group(
        "gloo",
        init_method=init_method,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=timeout),
    )
    try:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                break
            if job is None:
                break
            module, qualname, args = job
            try:
                fn = importlib.import_module(module)
                for part in qualname.split("."):
                    fn = getattr(fn, part)
                conn.send(("ok", fn(*args)))
            except BaseException:
                conn.send(("error", traceback.format_exc()))
    finally:
        dist.destroy_process_group()


def _ready() -> int:
    import torch.distributed as dist

    return dist.get_rank()


_MESH = None


def mesh():
    """The 1-d CPU mesh over every rank (built once per rank)."""
    global _MESH
    if _MESH is None:
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        _MESH = init_device_mesh("cpu", (dist.get_world_size(),))
    return _MESH


def place(t: Tensor | None, placement: str | None) -> Tensor | None:
    """``t`` (the same values on every rank) laid out as ``placement``; no communication."""
    if t is None or placement in (None, "tensor"):
        return t
    from torch.distributed.tensor import Replicate, Shard, distribute_tensor

    spec = [Shard(0)] if placement == "shard" else [Replicate()]
    return distribute_tensor(t, mesh(), spec, src_data_rank=None)


def snapshot(x):
    """A tensor as plain data: this rank's local part and its placements. No collective: the
    pytest process assembles the full tensor from the ranks' parts (``assemble``)."""
    if is_dtensor(x):
        return {"local": Packed(x.to_local()), "placements": str(x.placements)}
    if isinstance(x, Tensor):
        return {"local": Packed(x.detach()), "placements": "tensor"}
    if isinstance(x, list):  # LBFGS's histories: lists of flat vectors
        return [snapshot(v) for v in x]
    return x


class Packed:
    """A tensor's bytes, dtype and shape. A pipe would otherwise send each tensor through
    torch.multiprocessing's shared-memory file descriptors, about 1.5 ms per tensor: most of an
    example's time."""

    def __init__(self, t: Tensor):
        self.dtype, self.shape = t.dtype, tuple(t.shape)
        self.data = t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()

    def unpack(self) -> Tensor:
        if not self.data:
            return torch.empty(self.shape, dtype=self.dtype)
        raw = torch.frombuffer(bytearray(self.data), dtype=torch.uint8)
        return raw.view(self.dtype).reshape(self.shape)


def assemble(per_rank: list[dict], ctx=None) -> dict:
    """One run's results from every rank, with each tensor's ``full`` value: the ranks' shards
    concatenated along dim 0 (``Shard(0)``), or rank 0's copy (replicated, or a plain tensor).
    Ranks that stepped differently (other state entries, another step count) fail ``ctx``."""
    run = per_rank[0]
    for rank, other in enumerate(per_rank[1:], start=1):
        mine, theirs = [sorted(s) for s in run["steps"]], [sorted(s) for s in other["steps"]]
        for t, (a, b) in enumerate(zip(mine, theirs)):
            if a != b:
                ctx.fail(f"step {t + 1}", f"rank {rank} holds {b}, rank 0 {a}")
        if len(mine) != len(theirs):
            ctx.fail("the whole run", f"rank {rank} took {len(theirs)} steps, rank 0 {len(mine)}")
    steps = []
    for t, step in enumerate(run["steps"]):
        whole = {}
        for key, value in step.items():
            if isinstance(value, dict):
                parts = [r["steps"][t][key]["local"] for r in per_rank]
                parts = [p.unpack() if isinstance(p, Packed) else p for p in parts]
                sharded = value["placements"] == "(Shard(dim=0),)"
                value = {**value, "full": torch.cat(parts) if sharded else parts[0]}
            whole[key] = value
        steps.append(whole)
    return {"steps": steps, "error": run["error"]}
