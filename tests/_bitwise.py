"""Bitwise tensor comparison with messages that say where and by how much."""

from __future__ import annotations

import torch

_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bit patterns (complex as its real/imag pairs); -0.0 and 0.0 differ here."""
    if t.is_sparse:
        t = t.to_dense()
    if t.is_complex():
        t = torch.view_as_real(t)
    if t.dtype not in _INT_VIEW:
        return t
    return t.contiguous().view(_INT_VIEW[t.dtype])


def assert_bitwise_equal(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.dtype == expected.dtype, f"{what}: dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    assert actual.layout == expected.layout, f"{what}: layout {actual.layout} != {expected.layout}"
    a, e = bits(actual), bits(expected)
    if torch.equal(a, e):
        return
    actual, expected = actual.to_dense(), expected.to_dense()
    where = (a != e).nonzero()[0].tolist()
    flat = (a != e).flatten().nonzero()[0].item()
    raise AssertionError(
        f"{what} differs bitwise at index {where} ({int((a != e).sum())} of {a.numel()} "
        f"elements differ): actual {actual.flatten()[flat // (2 if actual.is_complex() else 1)]!r}"
        f" expected {expected.flatten()[flat // (2 if expected.is_complex() else 1)]!r}"
    )


def assert_state_dicts_bitwise_equal(mine: dict, theirs: dict, what: str) -> None:
    """Same layout (indices, keys, group entries) and bitwise-equal tensors."""
    assert mine["state"].keys() == theirs["state"].keys(), f"{what}: params with state differ"
    for index, state in theirs["state"].items():
        assert mine["state"][index].keys() == state.keys(), f"{what}: state keys of param {index}"
        for key, value in state.items():
            ours = mine["state"][index][key]
            if torch.is_tensor(value):
                assert torch.is_tensor(ours), f"{what}: state[{index}][{key!r}] is not a tensor"
                assert ours.device == value.device, f"{what}: state[{index}][{key!r}] device"
                assert_bitwise_equal(ours, value, f"{what}: state[{index}][{key!r}]")
            else:
                assert ours == value, f"{what}: state[{index}][{key!r}]"
    assert len(mine["param_groups"]) == len(theirs["param_groups"])
    for ours, group in zip(mine["param_groups"], theirs["param_groups"]):
        assert ours.keys() == group.keys(), f"{what}: param_group keys {ours.keys() ^ group.keys()}"
        for key, value in group.items():
            if torch.is_tensor(value):
                assert_bitwise_equal(ours[key], value, f"{what}: param_group[{key!r}]")
            else:
                assert ours[key] == value, f"{what}: param_group[{key!r}] {ours[key]} != {value}"
