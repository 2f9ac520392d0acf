"""impl.SparseAdam is torch.optim.SparseAdam, bit for bit, on the rows its gradients name.

SparseAdam takes sparse gradients only, so it has its own runner here instead of the dense
sweep of ``_torch_pairs``: an embedding-like matrix (gradients naming rows, or single entries)
and a vector, in two param groups, with repeated indices, a missing and an empty gradient.
"""

from __future__ import annotations

import copy
import inspect

import pytest
import torch
from torch.nn import Parameter
from torch.testing._internal import common_optimizers as torch_table

import impl
from tests._bitwise import assert_bitwise_equal, assert_state_dicts_bitwise_equal
from tests._torch_pairs import clone_params, pattern
from tests._torch_table import error_outcome

DTYPES = [
    pytest.param(d, id=str(d).removeprefix("torch."))
    for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16)
]
LAYOUTS = [pytest.param(True, id="coalesced"), pytest.param(False, id="uncoalesced")]
SPARSE_DIMS = [pytest.param(1, id="rows"), pytest.param(2, id="entries")]
LRS = [pytest.param(0.05, id="float-lr"), pytest.param(torch.tensor(0.05), id="tensor-lr")]
STEPS = 4


def make_params(dtype: torch.dtype) -> list[torch.Tensor]:
    """An embedding-like table (six rows of four) and a vector."""
    return [pattern((6, 4), 0.1, dtype), pattern((7,), 0.2, dtype)]


def sparse_grad(shape, index: int, step: int, dtype, *, sparse_dims: int, coalesced: bool):
    """Three entries, the first one named twice (summed by coalescing); row 5 is never named."""
    n = shape[0]
    rows = [(step + index) % n, (3 * step + 1) % n, (step + index) % n]
    if sparse_dims == 2:
        cols = [step % shape[1], (step + 2) % shape[1], step % shape[1]]
        indices = torch.tensor([rows, cols])
    else:
        indices = torch.tensor([rows])
    values = pattern((3, *shape[sparse_dims:]), 10.0 * step + index, dtype)
    grad = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)
    return grad.coalesce() if coalesced else grad


def empty_grad(shape, dtype, *, sparse_dims: int):
    indices = torch.empty((sparse_dims, 0), dtype=torch.long)
    values = torch.empty((0, *shape[sparse_dims:]), dtype=dtype)
    return torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)


def grad_for(p, index: int, step: int, *, sparse_dims: int = 1, coalesced: bool = True):
    """Param 0 has no gradient on step 2, param 1 an empty one on step 3 (its step still
    counts); everything else names three entries."""
    sparse_dims = min(sparse_dims, p.dim())
    if (index, step) == (0, 1):
        return None
    if (index, step) == (1, 2):
        return empty_grad(p.shape, p.dtype, sparse_dims=sparse_dims)
    return sparse_grad(p.shape, index, step, p.dtype, sparse_dims=sparse_dims, coalesced=coalesced)


def param_groups(params, lr):
    return [{"params": params[:1]}, {"params": params[1:], "lr": lr / 2}]


def set_grads(params_lists, step: int, **grad_kind) -> None:
    """The same gradient (cloned) for the same param of every list."""
    for params in params_lists:
        for i, p in enumerate(params):
            g = grad_for(p, i, step, **grad_kind)
            p.grad = None if g is None else g.clone()


def run_pair(dtype, *, lr=0.05, maximize=False, sparse_dims=1, coalesced=True, after_step=None):
    params = make_params(dtype)
    twins = clone_params(params)
    mine = impl.SparseAdam(param_groups(params, lr), lr=lr, maximize=maximize)
    theirs = torch.optim.SparseAdam(
        param_groups(twins, copy.deepcopy(lr)), lr=copy.deepcopy(lr), maximize=maximize
    )
    for step in range(STEPS):
        set_grads([params, twins], step, sparse_dims=sparse_dims, coalesced=coalesced)
        mine.step()
        theirs.step()
        if after_step is not None:
            after_step(step, mine, theirs, params, twins)
    return mine, theirs, params, twins


def assert_same_step(step, mine, theirs, params, twins):
    for i, (p, q) in enumerate(zip(params, twins)):
        assert_bitwise_equal(p, q, f"param {i} after step {step + 1}")
    assert_state_dicts_bitwise_equal(mine.state_dict(), theirs.state_dict(), f"step {step + 1}")


@pytest.mark.parametrize("lr", LRS)
@pytest.mark.parametrize("maximize", [False, True], ids=["minimize", "maximize"])
@pytest.mark.parametrize("sparse_dims", SPARSE_DIMS)
@pytest.mark.parametrize("coalesced", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_equal_to_torch(dtype, coalesced, sparse_dims, maximize, lr):
    run_pair(
        dtype,
        lr=lr,
        maximize=maximize,
        sparse_dims=sparse_dims,
        coalesced=coalesced,
        after_step=assert_same_step,
    )


def test_step_is_a_python_int_counting_empty_gradients_like_torch():
    mine, theirs, _, _ = run_pair(torch.float32)
    steps = [opt.state_dict()["state"][1]["step"] for opt in (mine, theirs)]
    assert steps == [STEPS, STEPS] and all(type(s) is int for s in steps)


@pytest.mark.parametrize("sparse_dims", SPARSE_DIMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_entries_not_named_are_bitwise_unchanged(dtype, sparse_dims):
    params = make_params(dtype)
    opt = impl.SparseAdam(param_groups(params, 0.05), lr=0.05)
    for step in range(STEPS):
        set_grads([params], step, sparse_dims=sparse_dims, coalesced=False)
        before = [p.clone() for p in params]
        state_before = copy.deepcopy(opt.state_dict()["state"])
        opt.step()
        for i, p in enumerate(params):
            if p.grad is None:
                assert_bitwise_equal(p, before[i], f"param {i} without gradient")
                continue
            named = torch.zeros_like(p, dtype=torch.bool)
            named[tuple(p.grad.coalesce()._indices())] = True
            where = f"param {i}, entries not named on step {step + 1}"
            assert_bitwise_equal(p[~named], before[i][~named], where)
            for key in ("exp_avg", "exp_avg_sq"):
                old = state_before.get(i, {}).get(key, torch.zeros_like(p))
                assert_bitwise_equal(opt.state[p][key][~named], old[~named], f"{where}: {key}")
    assert_bitwise_equal(params[0][5], make_params(dtype)[0][5], "row 5, never named")


@pytest.mark.parametrize("sparse_dims", SPARSE_DIMS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_uncoalesced_gradient_equals_its_coalesced_form(dtype, sparse_dims):
    runs = []
    for coalesced in (False, True):
        params = make_params(dtype)
        opt = impl.SparseAdam(param_groups(params, 0.05), lr=0.05)
        for step in range(STEPS):
            set_grads([params], step, sparse_dims=sparse_dims, coalesced=coalesced)
            opt.step()
        runs.append((params, opt.state_dict()))
    (raw, raw_state), (merged, merged_state) = runs
    for i, (p, q) in enumerate(zip(raw, merged)):
        assert_bitwise_equal(p, q, f"param {i}: uncoalesced vs coalesced gradients")
    assert_state_dicts_bitwise_equal(raw_state, merged_state, "uncoalesced vs coalesced")


def test_gradient_is_not_modified():
    params = make_params(torch.float32)
    opt = impl.SparseAdam(param_groups(params, 0.05), lr=0.05, maximize=True)
    set_grads([params], 0, coalesced=False)
    given = [p.grad.clone() for p in params]
    opt.step()
    for i, (p, g) in enumerate(zip(params, given)):
        assert not p.grad.is_coalesced(), "step() coalesced p.grad in place"
        assert_bitwise_equal(p.grad, g, f"param {i} grad after step")


def test_dense_gradient_is_refused_like_torch_and_changes_nothing():
    """Same class and message; impl refuses before touching anything. torch, whose loop raises
    at the dense gradient, has by then counted a step, without an update, for the params before
    it in its group: their bias corrections run one step ahead from then on."""
    outcomes = []
    for cls in (impl.SparseAdam, torch.optim.SparseAdam):
        params = make_params(torch.float32)
        opt = cls(params, lr=0.05)
        set_grads([params], 0)
        params[1].grad = torch.ones_like(params[1])
        before = [p.clone() for p in params]
        with pytest.raises(RuntimeError) as raised:
            opt.step()
        outcomes.append((str(raised.value), opt.state_dict()))
        for i, (p, b) in enumerate(zip(params, before)):
            assert_bitwise_equal(p, b, f"{cls.__module__}: param {i} after the refused step")
    (mine, my_state), (theirs, their_state) = outcomes
    assert mine == theirs, "the refusal's message"
    assert "SparseAdam does not support dense gradients" in mine
    assert my_state["state"] == {}, "impl state after the refused step"
    assert their_state["state"][0]["step"] == 1, "torch no longer counts the step: update this"


def test_dense_gradient_first_in_its_group_leaves_torch_untouched_too():
    states = []
    for cls in (impl.SparseAdam, torch.optim.SparseAdam):
        params = make_params(torch.float32)
        opt = cls(params, lr=0.05)
        set_grads([params], 0)
        params[0].grad = torch.ones_like(params[0])
        with pytest.raises(RuntimeError, match="does not support dense gradients"):
            opt.step()
        states.append(opt.state_dict())
    assert_state_dicts_bitwise_equal(*states, "after a refused first param")
    assert states[0]["state"] == {}


def test_constructor_signature_and_defaults_equal_torch():
    def as_table(cls):
        params = inspect.signature(cls.__init__).parameters.values()
        return [(p.name, p.kind, p.default) for p in params]

    assert as_table(impl.SparseAdam) == as_table(torch.optim.SparseAdam)
    mine = impl.SparseAdam([Parameter(torch.zeros(1))]).defaults
    assert mine == torch.optim.SparseAdam([Parameter(torch.zeros(1))]).defaults


def test_is_a_torch_optimizer_with_an_algorithm_box():
    assert issubclass(impl.SparseAdam, torch.optim.Optimizer)
    assert r"\begin{aligned}" in impl.SparseAdam.__doc__
    assert "seed post" in impl.SparseAdam.__doc__


def test_closure_loss_and_hooks():
    table = Parameter(pattern((5, 3), 0.4, torch.float32))
    opt = impl.SparseAdam([table], lr=0.1)
    calls = []
    opt.register_step_pre_hook(lambda *_: calls.append("pre"))
    opt.register_step_post_hook(lambda *_: calls.append("post"))

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.embedding(torch.tensor([1, 3, 1]), table, sparse=True).sum()
        loss.backward()
        return loss

    before = table.detach().clone()
    assert opt.step(closure).item() == before[[1, 3, 1]].sum().item()
    assert calls == ["pre", "post"]
    assert not torch.equal(table.detach()[1], before[1]), "the named row moved"
    assert_bitwise_equal(table.detach()[0], before[0], "a row the closure did not name")


DIRECTIONS = [
    pytest.param(True, id="torch-saves-impl-loads"),
    pytest.param(False, id="impl-saves-torch-loads"),
]


@pytest.mark.parametrize("maximize", [False, True], ids=["minimize", "maximize"])
@pytest.mark.parametrize("torch_saves", DIRECTIONS)
def test_cross_load_continues_bitwise(torch_saves, maximize):
    saver_cls, loader_cls = (torch.optim.SparseAdam, impl.SparseAdam)[:: 1 if torch_saves else -1]
    params = make_params(torch.float32)
    saver = saver_cls(param_groups(params, 0.05), lr=0.05, maximize=maximize)
    for step in range(2):
        set_grads([params], step, coalesced=False)
        saver.step()
    saved = copy.deepcopy(saver.state_dict())

    resumed = clone_params(params)
    loader = loader_cls(param_groups(resumed, 0.05), lr=0.05, maximize=maximize)
    loader.load_state_dict(saved)
    assert_state_dicts_bitwise_equal(loader.state_dict(), saver.state_dict(), "after load")
    assert type(loader.state[resumed[0]]["step"]) is int, "step stays a Python int"

    for step in range(2, STEPS):
        set_grads([params, resumed], step, coalesced=False)
        saver.step()
        loader.step()
    for i, (p, q) in enumerate(zip(resumed, params)):
        assert_bitwise_equal(p, q, f"param {i} two steps after the load")
    assert_state_dicts_bitwise_equal(loader.state_dict(), saver.state_dict(), "after resuming")


def test_checkpoint_without_maximize_loads_and_steps_like_torch():
    """Groups saved before ``maximize`` existed: torch reads it with a default of False."""
    results = []
    for cls in (impl.SparseAdam, torch.optim.SparseAdam):
        params = make_params(torch.float64)
        opt = cls(param_groups(params, 0.05), lr=0.05)
        set_grads([params], 0)
        opt.step()
        saved = copy.deepcopy(opt.state_dict())
        for group in saved["param_groups"]:
            del group["maximize"]
        opt.load_state_dict(saved)
        set_grads([params], 2)
        opt.step()
        results.append((params, opt.state_dict()))
    (mine, my_state), (theirs, their_state) = results
    for i, (p, q) in enumerate(zip(mine, theirs)):
        assert_bitwise_equal(p, q, f"param {i} after stepping an old checkpoint")
    assert_state_dicts_bitwise_equal(my_state, their_state, "old checkpoint")


def _torch_error_inputs():
    torch.manual_seed(0)  # the table draws sample params at random; their values are irrelevant
    return torch_table.optim_error_inputs_func_sparseadam(device="cpu", dtype=torch.float32)


@pytest.mark.parametrize(
    "index",
    [pytest.param(i, id=e.optimizer_error_input.desc) for i, e in enumerate(_torch_error_inputs())],
)
def test_replays_torch_error_inputs(index):
    error_input = _torch_error_inputs()[index]
    theirs = error_outcome(torch.optim.SparseAdam, error_input)
    assert theirs[0] is not None, "torch itself no longer raises here"
    assert error_outcome(impl.SparseAdam, error_input) == theirs


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": 0.0},
        {"lr": -1.0},
        {"eps": 0.0},
        {"betas": (0.9, 1.0)},
        {"betas": (-0.1, 0.9)},
        {"lr": torch.tensor([0.1, 0.2])},
    ],
    ids=str,
)
def test_invalid_hyperparameters_raise_like_torch(kwargs):
    def outcome(cls):
        try:
            cls([Parameter(torch.zeros(2))], **kwargs)
        except Exception as e:
            return type(e), str(e)
        return None, None

    assert outcome(torch.optim.SparseAdam)[0] is not None
    assert outcome(impl.SparseAdam) == outcome(torch.optim.SparseAdam)


def test_sparse_and_complex_params_are_listed_like_torch():
    params = [
        {"params": [torch.zeros(2, dtype=torch.complex64), torch.zeros(3)]},
        {"params": [torch.zeros(3).to_sparse(), torch.zeros(1, dtype=torch.complex128)]},
    ]
    messages = []
    for cls in (impl.SparseAdam, torch.optim.SparseAdam):
        with pytest.raises(ValueError) as raised:
            cls(copy.deepcopy(params))
        messages.append(str(raised.value))
    assert messages[0] == messages[1]
    assert "[[1, 0]]" in messages[0], "sparse params are reported before complex ones"


def _torch_configs():
    return [
        pytest.param(dtype, config, id=f"{str(dtype).removeprefix('torch.')}-{config.desc}")
        for dtype in (torch.float32, torch.float64)
        for config in torch_table.optim_inputs_func_sparseadam(device="cpu", dtype=dtype)
    ]


@pytest.mark.parametrize(("dtype", "config"), _torch_configs())
def test_torchs_own_configurations_step_bitwise_like_torch(dtype, config):
    """torch's own table (``optim_inputs_func_sparseadam``, what its tests run) through impl:
    params and every state entry bitwise equal after each of the steps, repeated indices, a
    missing and an empty gradient included."""
    params = make_params(dtype)
    twins = clone_params(params)
    mine = impl.SparseAdam(params, **copy.deepcopy(config.kwargs))
    theirs = torch.optim.SparseAdam(twins, **copy.deepcopy(config.kwargs))
    for step in range(STEPS):
        set_grads([params, twins], step, coalesced=False)
        mine.step()
        theirs.step()
        assert_same_step(step, mine, theirs, params, twins)
