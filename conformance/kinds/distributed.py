"""The ``distributed`` check: an optimizer on DTensor params of a gloo mesh, as FSDP2 shards them,
against torch.optim on the same layout and against the unsharded run.

Hypothesis draws the case in the pytest process; ``run_three`` runs on every rank of the pool
(``conformance.core.gloo``).
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from hypothesis import reject

from conformance import registry
from conformance.core.gloo import Packed, assemble, place, pool, snapshot
from conformance.core.judge import Context, assert_ulp
from conformance.core.repro import import_path
from conformance.subject import Subject, load_class, torch_reference


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
    path, entry_name, kwargs = subject_ref
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
    return (import_path(subject.cls), subject.entry.name, dict(subject.kwargs))


def _compare(ctx, what: str, actual, expected, bound: float, *, layout: bool) -> float:
    """Two snapshots of one tensor: the local parts (same layout) or the full tensors."""
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
    a, e = (x.unpack() if isinstance(x, Packed) else x for x in (actual[part], expected[part]))
    return assert_ulp(ctx, what, a, e, bound)


def _replicated_plain(actual, expected, what: str, case) -> bool:
    """torch's foreach path, given a list that mixes DTensors and plain tensors, may turn a plain
    param's new state into a Replicate DTensor (implicit replication;
    docs/torch-findings.md#finding-29); impl keeps a plain param's state plain. The values are
    still compared."""
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
    reference = torch_reference(subject)
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


# docs/torch-findings.md#finding-27: torch.view_as_real's sharding rule calls the real view of a
# Shard(0) complex DTensor Replicate (global shape, local data), after which torch.optim's
# complex updates on DTensors differ from its unsharded run (RMSprop, RAdam: seen by this check)
COMPLEX_DIVERGENCE = (
    "torch.optim on complex DTensors is not a reference: view_as_real marks a Shard(0) param's "
    "real view Replicate, and its updates then differ from its own unsharded run"
)
