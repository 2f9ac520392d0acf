"""The ``distributed`` check kind: an optimizer on DTensor params of a gloo mesh, as FSDP2 shards
them, against torch.optim on the same layout and against the unsharded run.

Hypothesis draws the case in the pytest process (``strategies.cases`` plus a placement per param)
and ships it, as plain data, to a persistent pool of gloo ranks (``RankPool``). The ranks never run
``@given``: each one builds the same case, runs it, and sends back what it holds after every step
(its local shard and the placements). Every collective has the process group's
timeout, and the pool answers within ``TIMEOUT`` seconds or is torn down, so a rank that fails or
hangs fails the test instead of hanging it.

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
import math
import multiprocessing
import os
import re
import shutil
import tempfile
import time
import traceback
from multiprocessing.connection import wait

import numpy as np
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
        return {"local": _Packed(x.to_local()), "placements": str(x.placements)}
    if isinstance(x, Tensor):
        return {"local": _Packed(x.detach()), "placements": "tensor"}
    if isinstance(x, list):  # LBFGS's histories: lists of flat vectors
        return [snapshot(v) for v in x]
    return x


class _Packed:
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
                parts = [p.unpack() if isinstance(p, _Packed) else p for p in parts]
                sharded = value["placements"] == "(Shard(dim=0),)"
                value = {**value, "full": torch.cat(parts) if sharded else parts[0]}
            whole[key] = value
        steps.append(whole)
    return {"steps": steps, "error": run["error"]}


def _build(subject, case, params, foreach, placements):
    """The subject on ``params`` with the case's starting state, each state tensor laid out like
    its param (as a sharded checkpoint loads it)."""
    opt = subject.build(case.replace(state={}), params, foreach=foreach)
    if not case.state:
        return opt
    sd = case.state_dict(opt)
    placements = placements or (None,) * len(params)
    for i, values in sd["state"].items():
        for key, value in values.items():
            drawn = case.state[i][key]
            if isinstance(drawn, np.ndarray) and tuple(value.shape) == case.shape(i):
                values[key] = place(value, placements[i])
    opt.load_state_dict(sd)
    case._keep_scalar_states(opt, params)
    return opt


def _state_snapshot(opt, params) -> dict:
    out = {}
    for i, p in enumerate(params):
        for key in sorted(opt.state.get(p, {})):
            out[f"state[{i}][{key!r}]"] = snapshot(opt.state[p][key])
    return out


def _closure(objective, params, placements):
    """The case's objective (LBFGS) on DTensor params: evaluated on the whole params, each
    gradient laid out as its param."""
    from impl._dtensor import full

    @torch.no_grad()
    def closure():
        loss, grads = objective.evaluate([full(p) for p in params])
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            p.grad = place(g, placements[i] if placements else None)
        return loss

    return closure


def run_placed(subject_ref: tuple, case, foreach, sharded: bool) -> dict:
    """On every rank: the subject on the case's params, laid out as ``case.placements`` (or all
    plain tensors), stepped; what each step left, or the error and where it was raised."""
    from conformance.subject import Subject, load_class

    path, entry_name, kwargs = subject_ref
    from conformance import registry

    subject = Subject(load_class(path), registry.BY_NAME[entry_name], dict(kwargs))
    placements = case.placements if sharded else None
    params = [
        torch.nn.Parameter(place(p, placements[i] if placements else None), requires_grad=False)
        for i, p in enumerate(case.make_params())
    ]
    steps: list[dict] = []
    at = "construction"
    try:
        opt = _build(subject, case, params, foreach, placements)
        for t in range(case.steps):
            at = f"step {t + 1}"
            if case.objective is not None:
                opt.step(_closure(case.objective, params, placements))
            else:
                for i, (p, g) in enumerate(zip(params, case.make_grads(t), strict=True)):
                    p.grad = place(g, placements[i] if placements else None)
                opt.step()
            taken = {f"param {i}": snapshot(p) for i, p in enumerate(params)}
            steps.append({**taken, **_state_snapshot(opt, params)})
    except Exception as e:
        message = (str(e).splitlines() or [""])[0][:300]  # torch raises some bare AssertionErrors
        return {"steps": steps, "error": (type(e).__name__, message, at)}
    return {"steps": steps, "error": None}


def run_three(subject_ref: tuple, reference_ref: tuple, case, foreach, torch_foreach) -> tuple:
    """The subject and torch.optim on the case's layout, and torch.optim unsharded, each as every
    rank's results (rank 0 gathers them: one round trip from the pytest process)."""
    import torch.distributed as dist

    runs = (
        run_placed(subject_ref, case, foreach, True),
        run_placed(reference_ref, case, torch_foreach, True),
        run_placed(reference_ref, case, torch_foreach, False),
    )
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, runs)
    return tuple([r[k] for r in gathered] for k in range(len(runs)))


# -- the check (pytest process side) ----------------------------------------------------------
def _ref(subject) -> tuple:
    from conformance.repro import import_path

    return (import_path(subject.cls), subject.entry.name, dict(subject.kwargs))


def _compare(ctx, what: str, actual, expected, bound: float, *, layout: bool) -> float:
    """Two snapshots of one tensor: the local parts (same layout) or the full tensors."""
    from conformance import checks

    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            ctx.fail(what, f"{actual!r} is not a list of {len(expected)} entries like expected")
        distances = [
            _compare(ctx, f"{what}[{k}]", a, e, bound, layout=layout)
            for k, (a, e) in enumerate(zip(actual, expected))
        ]
        return max(distances, default=0.0)
    if not isinstance(expected, dict):
        if actual != expected and not (actual != actual and expected != expected):
            ctx.fail(what, f"{actual!r} != expected {expected!r}")
        return 0.0
    if not isinstance(actual, dict):
        ctx.fail(
            what, f"{actual!r} is not a tensor; expected one laid out {expected['placements']}"
        )
    if (
        layout
        and actual["placements"] != expected["placements"]
        and not _replicated_plain(actual, expected, what, ctx.case)
    ):
        ctx.fail(what, f"placements {actual['placements']} != expected {expected['placements']}")
    part = "local" if layout or "full" not in expected else "full"  # in a list: rank 0's
    a, e = (x.unpack() if isinstance(x, _Packed) else x for x in (actual[part], expected[part]))
    return checks.assert_ulp(ctx, what, a, e, bound)


def _replicated_plain(actual, expected, what: str, case) -> bool:
    """torch's foreach path, given a list that mixes DTensors and plain tensors, may turn a plain
    param's new state into a Replicate DTensor (implicit replication; README, findings); impl
    keeps a plain param's state plain. The values are still compared."""
    index = re.match(r"step \d+, state\[(\d+)\]", what)
    return (
        index is not None
        and case.placements[int(index.group(1))] == "tensor"
        and (actual["placements"], expected["placements"]) == ("tensor", "(Replicate(),)")
    )


def _compare_steps(ctx, actual: dict, expected: dict, bound: float, *, layout: bool, rank=None):
    worst = 0.0
    on = "" if rank is None else f" (rank {rank}'s shard)"
    for t, (sa, se) in enumerate(zip(actual["steps"], expected["steps"], strict=True)):
        if set(sa) != set(se):
            ctx.fail(f"step {t + 1}{on}", f"state entries {sorted(sa)} != expected {sorted(se)}")
        for key, value in se.items():
            where = f"step {t + 1}, {key}{on}"
            worst = max(worst, _compare(ctx, where, sa[key], value, bound, layout=layout))
    return worst


def sharded_matches_torch(subject, case) -> float:
    """The subject on the case's DTensor layout, against torch.optim on the same layout (every
    rank's shard and placements, params and every state entry, after every step) and against
    torch.optim unsharded (the full tensors). Where torch.optim cannot run on the layout, the
    subject must still run, and equal the unsharded result. Returns the largest ULP distance
    between sharded and unsharded, which float32 and float64 must keep at 0 (``entry.
    sharded_exact``): elementwise updates see the same values whatever the shard; half
    precision and complex are reported (torch's own kernels round a slice differently)."""
    from hypothesis import reject

    from conformance import checks
    from conformance.checks import Context

    reference = checks.torch_reference(subject)
    # the subject's own path unless it names one: f32/f64 paths agree, but not which input
    # they refuse (a tensor lr on the foreach path)
    matching = subject.bitwise and subject.reference == "matching"
    torch_foreach = case.foreach if matching else subject.reference_foreach(case)
    path = "foreach" if torch_foreach else "for-loop"
    name = subject.entry.torch_name
    ctx = Context("distributed", subject, case, f"torch.optim.{name} ({path} path) on DTensors")
    mine, theirs, unsharded = pool().call(
        run_three, _ref(subject), _ref(reference), case, case.foreach, torch_foreach
    )[0]
    unsharded = assemble(unsharded[:1])
    if unsharded["error"]:  # torch refuses the case itself: so must the subject, the same way
        if subject.path(case.foreach) != ("foreach" if torch_foreach else "for-loop"):
            reject()  # another path may refuse other inputs
        if mine[0]["error"] is None or mine[0]["error"][:2] != unsharded["error"][:2]:
            ctx.fail("the whole run", f"raised {mine[0]['error']}, expected {unsharded['error']}")
        return 0.0
    if mine[0]["error"]:
        kind, message, at = mine[0]["error"]
        ctx.fail(at, f"raised {kind}: {message} (torch.optim runs this case unsharded)")
    half = case.dtype in ("float16", "bfloat16")
    if theirs[0]["error"]:
        why = f"torch.optim raised {theirs[0]['error'][0]} on DTensors"
    elif case.torch_dtype.is_complex:
        why = COMPLEX_DIVERGENCE
    elif subject.entry.dtensor_reference == "unsharded":
        why = "the entry's DTensor reference"
    else:
        why = None
    if why is None and subject.bitwise:
        for rank, (a, e) in enumerate(zip(mine, theirs, strict=True)):
            _compare_steps(ctx, a, e, 0.0, layout=True, rank=rank)
    whole = assemble(mine, ctx)
    if why is not None:  # the unsharded run is the reference; half: reported (slices round apart)
        ctx.reference = f"torch.optim.{name} ({path} path) unsharded ({why})"
        _compare_steps(ctx, whole, unsharded, math.inf if half else 0.0, layout=False)
    exact = subject.entry.sharded_exact and case.dtype in ("float32", "float64")
    ctx.reference = f"torch.optim.{name} ({path} path) unsharded"
    return _compare_steps(ctx, whole, unsharded, 0.0 if exact else math.inf, layout=False)


# README, findings: torch.view_as_real's sharding rule calls the real view of a Shard(0) complex
# DTensor Replicate (global shape, local data), after which torch.optim's complex updates on
# DTensors differ from its unsharded run (RMSprop, RAdam: seen by this check)
COMPLEX_DIVERGENCE = (
    "torch.optim on complex DTensors is not a reference: view_as_real marks a Shard(0) param's "
    "real view Replicate, and its updates then differ from its own unsharded run"
)
