"""impl under torch.distributed on gloo meshes of CPU ranks, each integration against torch.optim
doing the same thing: fully_shard (FSDP2), ZeroRedundancyOptimizer, and distributed checkpoints
(DCP: save from 2 ranks, load into 1 and 3, dcp_to_torch_save, torch <-> impl cross-loads, and
get_optimizer_state_dict's initialising step at lr=0).

The ranks run the module-level ``*_job`` functions through ``conformance.core.gloo.RankPool``;
the assertions are made here, on what rank 0 sends back. Values are fixed functions of the
index (no random draws): the property-based version is the ``distributed`` check kind.
Gradients are set directly, not by a backward pass, whose all-reduce averages (not exact for 3
ranks).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import impl
from conformance.core import gloo
from tests._torch_pairs import DENSE_NAMES

pytestmark = [
    pytest.mark.skipif(
        gloo.unavailable_reason() is not None, reason=str(gloo.unavailable_reason())
    ),
    # one xdist worker runs them all (``--dist loadgroup``), sharing the module's gloo pools
    pytest.mark.xdist_group("gloo"),
]

# every class that steps on dense gradients without a closure (SparseAdam: sparse only; LBFGS:
# a closure over the whole model; Muon: 2-d params only, in the check kind)
ELEMENTWISE = (*DENSE_NAMES, "Adafactor")
KWARGS = {  # non-default flags where they change the update (weight decay everywhere it exists)
    "SGD": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True},
    "AdamW": {"lr": 0.01, "weight_decay": 0.1},
    "Adagrad": {"lr": 0.1, "weight_decay": 0.1, "lr_decay": 0.01},
    "RMSprop": {"lr": 0.01, "momentum": 0.5, "centered": True, "weight_decay": 0.1},
    "Adamax": {"lr": 0.01, "weight_decay": 0.1},
    "NAdam": {"lr": 0.01, "weight_decay": 0.1, "decoupled_weight_decay": True},
    "RAdam": {"lr": 0.01, "weight_decay": 0.1},
    "Adadelta": {"weight_decay": 0.1},
    "ASGD": {"lr": 0.01, "t0": 1.0, "weight_decay": 0.1},
    "Rprop": {"lr": 0.01},
    "Adafactor": {"lr": 0.01, "weight_decay": 0.1},
}
SHAPES = ((7, 5), (7,), (3, 7), (3,), (1, 3))  # the MLP's params; dim 0 = 1 < 2 or 3 ranks


# -- on the ranks ---------------------------------------------------------------------------------
def _values(shape, k: int, dtype=torch.float32) -> torch.Tensor:
    n = math.prod(shape)
    return torch.arange(n, dtype=torch.float64).mul(0.7 + 0.1 * k).sin().reshape(shape).to(dtype)


def _mlp(frozen=False) -> nn.Module:
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3), nn.Linear(3, 1, bias=False))
    with torch.no_grad():
        for k, p in enumerate(model.parameters()):
            p.copy_(_values(p.shape, k))
    if frozen:
        model[0].weight.requires_grad_(False)
    return model


def _shard(model: nn.Module) -> nn.Module:
    from torch.distributed.fsdp import fully_shard

    fully_shard(model[0], mesh=gloo.mesh())
    fully_shard(model, mesh=gloo.mesh())
    return model


def _optimizer(path: str, name: str, params, kwargs=None):
    module = impl if path == "impl" else torch.optim
    return getattr(module, name)(params, **(KWARGS.get(name, {}) if kwargs is None else kwargs))


def _set_grads(model: nn.Module, step: int) -> None:
    for k, p in enumerate(model.parameters()):
        if p.requires_grad:
            grad = _values(p.shape, 10 * step + k + 1, p.dtype)
            p.grad = gloo.place(grad, "shard" if gloo.is_dtensor(p) else None)


def _full(x):
    if isinstance(x, torch.Tensor):
        return {
            "placements": str(x.placements) if gloo.is_dtensor(x) else "tensor",
            "full": (x.full_tensor() if gloo.is_dtensor(x) else x).detach().clone(),
        }
    return x


def _result(model: nn.Module, opt) -> dict:
    """Params and every state entry by parameter name, as full tensors with their placements."""
    names = {p: n for n, p in model.named_parameters()}
    out = {f"param {names[p]}": _full(p) for p in model.parameters()}
    for p, state in opt.state.items():
        for key in sorted(state):
            out[f"state[{names[p]}][{key!r}]"] = _full(state[key])
    return out


def _train(model, opt, steps: range) -> None:
    for t in steps:
        _set_grads(model, t)
        opt.step()


def fsdp_job(path: str, name: str, sharded: bool, steps: int = 3) -> dict:
    """The run's result, or ``{"error": ...}`` where the optimizer cannot step the DTensors."""
    model = _mlp()
    if sharded:
        _shard(model)
    opt = _optimizer(path, name, model.parameters())
    try:
        _train(model, opt, range(steps))
    except Exception as e:  # the same on every rank: no collective is left waiting
        return {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"}
    return _result(model, opt)


def zero_job(path: str, name: str, steps: int = 3) -> dict:
    from torch.distributed.optim import ZeroRedundancyOptimizer

    model = _mlp()
    cls = getattr(impl if path == "impl" else torch.optim, name)
    opt = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=cls, **KWARGS[name])
    _train(model, opt, range(steps))
    opt.consolidate_state_dict(to=0)
    consolidated = opt.state_dict() if torch.distributed.get_rank() == 0 else None
    return {"params": _result(model, opt.optim), "state_dict": consolidated}


def _state_dicts(model, opt):
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    return {"model": get_model_state_dict(model), "optim": get_optimizer_state_dict(model, opt)}


def dcp_save_job(path: str, name: str, directory: str, steps: int, frozen=False, kwargs=None):
    import torch.distributed.checkpoint as dcp

    model = _shard(_mlp(frozen))
    opt = _optimizer(path, name, model.parameters(), kwargs)
    _train(model, opt, range(steps))
    dcp.save(_state_dicts(model, opt), checkpoint_id=directory)
    return _result(model, opt)


def dcp_load_job(path, name, directory, start: int, steps: int, frozen=False, kwargs=None):
    """A fresh model and optimizer on this pool's mesh, loaded from ``directory``, then
    ``steps`` more steps (the gradients of steps start, start + 1, ...)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    model = _shard(_mlp(frozen))
    with torch.no_grad():  # not the saved values: the load must bring them
        for p in model.parameters():
            p.zero_()
    opt = _optimizer(path, name, model.parameters(), kwargs)
    state = _state_dicts(model, opt)
    dcp.load(state, checkpoint_id=directory)
    set_model_state_dict(model, state["model"])
    set_optimizer_state_dict(model, opt, state["optim"])
    _train(model, opt, range(start, start + steps))
    return _result(model, opt)


def unsharded_job(path, name, steps: int, frozen=False, kwargs=None) -> dict:
    model = _mlp(frozen)
    opt = _optimizer(path, name, model.parameters(), kwargs)
    _train(model, opt, range(steps))
    return _result(model, opt)


def fresh_state_dict_job(path: str, name: str) -> dict:
    """get_optimizer_state_dict on an optimizer that never stepped: DCP steps it at lr=0 to
    create its state; the params must come out unchanged."""
    model = _shard(_mlp())
    opt = _optimizer(path, name, model.parameters())
    before = _result(model, opt)
    try:
        _state_dicts(model, opt)
    except Exception as e:  # the same on every rank
        return {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0]}"}
    grads = [p.grad for p in model.parameters()]
    return {"before": before, "after": _result(model, opt), "grads": grads}


# -- here -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pools():
    """Gloo meshes of 1, 2 and 3 ranks, started when first used, closed with the module."""
    started: dict[int, gloo.RankPool] = {}

    def get(world_size: int) -> gloo.RankPool:
        if world_size not in started:
            started[world_size] = gloo.RankPool(world_size)
        return started[world_size]

    yield get
    for pool in started.values():
        pool.close()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(-1).view(torch.uint8) if t.numel() else t


def assert_same(actual: dict, expected: dict, *, placements=True, what="") -> None:
    """Same entries; each tensor bit for bit equal (and laid out alike where asked)."""
    assert sorted(actual) == sorted(expected), f"{what}: entries differ"
    for key, e in expected.items():
        a = actual[key]
        if not isinstance(e, dict):
            assert a == e, f"{what}, {key}: {a!r} != expected {e!r}"
            continue
        if placements:
            assert a["placements"] == e["placements"], f"{what}, {key}: placements differ"
        assert a["full"].dtype == e["full"].dtype and a["full"].shape == e["full"].shape, key
        assert torch.equal(_bits(a["full"]), _bits(e["full"])), (
            f"{what}, {key}: not bitwise equal\n  actual   {a['full']}\n  expected {e['full']}"
        )


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_fully_shard_mlp_steps_like_torch_and_like_unsharded(pools, name):
    impl_run, torch_run, unsharded = (
        pools(2).call(fsdp_job, path, name, sharded)[0]
        for path, sharded in (("impl", True), ("torch", True), ("torch", False))
    )
    assert "error" not in impl_run, impl_run.get("error")
    # torch 2.13's Rprop and Adafactor cannot (docs/torch-findings.md#finding-28)
    if "error" not in torch_run:
        assert_same(impl_run, torch_run, what="impl vs torch.optim under fully_shard")
    assert_same(impl_run, unsharded, placements=False, what="sharded vs unsharded")


@pytest.mark.parametrize("name", ["Adam", "SGD", "Adafactor"])
def test_zero_redundancy_optimizer_wraps_impl_like_torch(pools, name):
    mine, theirs = (pools(2).call(zero_job, path, name)[0] for path in ("impl", "torch"))
    assert_same(mine["params"], theirs["params"], what="params after ZeRO steps")
    a, e = mine["state_dict"], theirs["state_dict"]
    assert a["param_groups"] == e["param_groups"]
    assert a["state"].keys() == e["state"].keys()
    for i, state in e["state"].items():
        assert (
            assert_same(
                {k: _full(v) for k, v in a["state"][i].items()},
                {k: _full(v) for k, v in state.items()},
                what=f"consolidated state {i}",
            )
            is None
        )


@pytest.mark.parametrize("load_ranks", [1, 3])
@pytest.mark.parametrize("name", ["Adam", "SGD", "Adagrad", "Rprop"])
def test_checkpoint_from_2_ranks_resumes_bitwise_on_other_mesh_sizes(
    pools, tmp_path, name, load_ranks
):
    directory = str(tmp_path / "ckpt")
    pools(2).call(dcp_save_job, "impl", name, directory, 2)
    resumed = pools(load_ranks).call(dcp_load_job, "impl", name, directory, 2, 2)[0]
    straight = pools(1).call(unsharded_job, "impl", name, 4)[0]
    assert_same(resumed, straight, placements=False, what=f"saved on 2, resumed on {load_ranks}")


def test_dcp_to_torch_save_holds_the_unsharded_tensors(pools, tmp_path):
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    directory, file = str(tmp_path / "ckpt"), tmp_path / "full.pt"
    pools(2).call(dcp_save_job, "impl", "Adam", directory, 2)
    dcp_to_torch_save(directory, file)
    saved = torch.load(file, weights_only=False)
    straight = pools(1).call(unsharded_job, "impl", "Adam", 2)[0]
    for key, value in straight.items():
        if key.startswith("param "):
            tensor = saved["model"][key.removeprefix("param ")]
        else:
            name, entry = key.removeprefix("state[").split("][")
            tensor = saved["optim"]["state"][name][eval(entry.removesuffix("]"))]
        assert torch.equal(_bits(tensor), _bits(value["full"])), key


@pytest.mark.parametrize(("saved_by", "loaded_by"), [("torch", "impl"), ("impl", "torch")])
def test_checkpoints_cross_load_between_torch_and_impl(pools, tmp_path, saved_by, loaded_by):
    directory = str(tmp_path / "ckpt")
    pools(2).call(dcp_save_job, saved_by, "AdamW", directory, 2)
    crossed = pools(2).call(dcp_load_job, loaded_by, "AdamW", directory, 2, 2)[0]
    straight = pools(2).call(dcp_load_job, saved_by, "AdamW", directory, 2, 2)[0]
    assert_same(crossed, straight, what=f"saved by {saved_by}, resumed by {loaded_by}")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_get_optimizer_state_dict_on_a_fresh_optimizer_leaves_params_unchanged(pools, name):
    mine = pools(2).call(fresh_state_dict_job, "impl", name)[0]
    assert "error" not in mine, mine.get("error")

    def params(result):
        return {k: v for k, v in result.items() if k.startswith("param ")}

    assert_same(params(mine["after"]), params(mine["before"]), what="params after DCP's step")
    assert all(g is None for g in mine["grads"])
    theirs = pools(2).call(fresh_state_dict_job, "torch", name)[0]
    if "error" not in theirs:  # torch 2.13's Rprop and Adafactor cannot step DTensors
        assert_same(mine["after"], theirs["after"], what="state created by DCP's step")


@pytest.mark.parametrize(
    ("name", "kwargs", "frozen"),
    [("SGD", {"lr": 0.1}, False), ("Adam", None, True)],
    ids=["stateless-SGD", "frozen-params"],
)
def test_checkpoint_roundtrip_of_stateless_and_frozen(pools, tmp_path, name, kwargs, frozen):
    directory = str(tmp_path / "ckpt")
    pools(2).call(dcp_save_job, "impl", name, directory, 2, frozen, kwargs)
    resumed = pools(3).call(dcp_load_job, "impl", name, directory, 2, 1, frozen, kwargs)[0]
    straight = pools(1).call(unsharded_job, "impl", name, 3, frozen, kwargs)[0]
    assert_same(resumed, straight, placements=False, what="resumed on 3 ranks")
    if frozen:
        assert not any("0.weight" in key and key.startswith("state") for key in resumed)


# -- the distributed check catches what only a mesh shows ----------------------------------------
class RankZeroOnlySGD(impl.SGD):
    """Planted bug: on DTensor params only rank 0 steps its shard (the others drop their
    gradients), as a step guarded by ``if rank == 0`` would. Unsharded it is impl.SGD."""

    def step(self, closure=None):
        if torch.distributed.is_initialized() and torch.distributed.get_rank() != 0:
            for group in self.param_groups:
                for p in group["params"]:
                    if gloo.is_dtensor(p):
                        p.grad = None
        return super().step(closure)


def _sharded_sgd_case():
    import numpy as np

    from conformance.core.case import Case, P

    values = np.arange(12.0).reshape(4, 3) / 8
    return Case(
        dtype="float32",
        device="cpu",
        params=[P(values), P(np.array(0.5))],
        groups=[
            {
                "lr": 0.5,
                "momentum": 0.5,
                "dampening": 0.0,
                "weight_decay": 0.0,
                "nesterov": False,
                "maximize": False,
                "params": [0, 1],
            }
        ],
        grads=[[values - 1, np.array(0.25)], [values + 1, None]],
        placements=("shard", "replicate"),
    )


def test_distributed_check_passes_impl_and_catches_a_step_on_rank_zero_only():
    from conformance import checks, registry
    from conformance.core.judge import ConformanceError
    from conformance.subject import Subject

    case, entry = _sharded_sgd_case(), registry.BY_NAME["SGD"]
    assert checks.CHECKS["distributed"](Subject(impl.SGD, entry), case) == 0.0
    with pytest.raises(ConformanceError, match=r"step 1 \(rank 1.s shard\)"):
        checks.CHECKS["distributed"](Subject(RankZeroOnlySGD, entry), case)
