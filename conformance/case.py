"""A drawn case as plain data, so that a failure can be replayed without Hypothesis.

Every number is a Python float (float64) holding a value that is exactly representable in the
case's dtype, so ``repr(case)`` is a lossless constructor call: the repro snippet of a failure
is ``Case(...)`` pasted into a check function.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

DTYPES = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
    "complex64": torch.complex64,
    "complex128": torch.complex128,
}
REAL_OF = {torch.complex64: torch.float32, torch.complex128: torch.float64}


def real_dtype(dtype: torch.dtype) -> torch.dtype:
    return REAL_OF.get(dtype, dtype)


def _literal(a: np.ndarray) -> str:
    return f"np.array({a.tolist()!r}).reshape({a.shape!r})" if a.ndim else f"np.array({a.item()!r})"


@dataclass(frozen=True)
class P:
    """One parameter: its logical values (complex: a trailing axis of 2) and memory layout.

    ``layout``: "contiguous", "transposed" (a ``.mT`` view of a contiguous base; >= 2 dims) or
    "strided" (every other element of a twice-as-wide base; >= 1 dim).
    """

    values: np.ndarray
    layout: str = "contiguous"

    def __repr__(self) -> str:
        return f"P({_literal(self.values)}, {self.layout!r})"


def to_tensor(values: np.ndarray, dtype: torch.dtype, device: str, layout="contiguous") -> Tensor:
    # a copy: from_numpy shares memory, and optimizers update in place
    t = torch.from_numpy(np.array(values, dtype=np.float64, copy=True))
    if dtype.is_complex and t.numel() == 0:  # view_as_complex rejects empty tensors' strides
        t = torch.empty(t.shape[:-1], dtype=dtype)
    elif dtype.is_complex:
        t = torch.view_as_complex(t.to(real_dtype(dtype)).contiguous())
    t = t.to(device=device, dtype=dtype)
    if layout == "transposed":
        return t.mT.contiguous().mT
    if layout == "strided":
        base = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=dtype, device=device)
        base[..., ::2] = t
        return base[..., ::2]
    return t


def to_numpy(t: Tensor) -> np.ndarray:
    """float64 numpy copy; complex tensors as their ``view_as_real`` pairs."""
    t = t.detach()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.cpu().double().numpy().copy()


@dataclass(frozen=True)
class Case:
    """Inputs of one check: everything an optimizer run depends on.

    - ``groups``: hyperparameters per param group, with ``"params"`` as indices into ``params``;
    - ``state``: starting state per param index in torch's state_dict layout (``step`` a float);
      a param without an entry starts fresh;
    - ``grads[t][i]``: the gradient of param ``i`` at step ``t`` (``None``: no gradient);
    - ``foreach``/``torch_foreach``: the path for impl and for torch.optim;
    - ``tensor_lr``: pass each group's lr as a float32 0-d tensor, as torch allows.
    """

    dtype: str
    device: str
    params: list[P]
    groups: list[dict]
    state: dict[int, dict] = field(default_factory=dict)
    grads: list[list[np.ndarray | None]] = field(default_factory=list)
    foreach: bool | None = None
    torch_foreach: bool | None = None
    tensor_lr: bool = False

    def __repr__(self) -> str:
        def arr(a):
            return "None" if a is None else _literal(np.asarray(a))

        state = {
            i: {k: (v if isinstance(v, float) else arr(v)) for k, v in s.items()}
            for i, s in self.state.items()
        }
        state_src = (
            "{"
            + ", ".join(
                f"{i}: {{"
                + ", ".join(f"{k!r}: {v if isinstance(v, str) else repr(v)}" for k, v in s.items())
                + "}"
                for i, s in state.items()
            )
            + "}"
        )
        grads = "[" + ", ".join("[" + ", ".join(arr(g) for g in gs) + "]" for gs in self.grads)
        return (
            f"Case(dtype={self.dtype!r}, device={self.device!r},\n"
            f"     params={self.params!r},\n     groups={self.groups!r},\n"
            f"     state={state_src},\n     grads={grads}],\n"
            f"     foreach={self.foreach!r}, torch_foreach={self.torch_foreach!r},"
            f" tensor_lr={self.tensor_lr!r})"
        )

    replace = replace

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def steps(self) -> int:
        return len(self.grads)

    # -- materialization (fresh tensors on every call) -------------------------------------------
    def make_params(self) -> list[Tensor]:
        return [to_tensor(p.values, self.torch_dtype, self.device, p.layout) for p in self.params]

    def make_grads(self, t: int) -> list[Tensor | None]:
        return [
            None if g is None else to_tensor(g, self.torch_dtype, self.device)
            for g in self.grads[t]
        ]

    def param_groups(self, params: list[Tensor]) -> list[dict]:
        groups = []
        for g in self.groups:
            g = dict(g)
            if self.tensor_lr:
                g["lr"] = torch.tensor(g["lr"], dtype=torch.float32)
            g["params"] = [params[i] for i in g["params"]]
            groups.append(g)
        return groups

    def build(self, cls, params: list[Tensor], **kwargs) -> torch.optim.Optimizer:
        """``cls(groups, **kwargs)`` on ``params`` with the case's starting state loaded."""
        opt = cls(self.param_groups(params), **kwargs)
        if self.state:
            opt.load_state_dict(self.state_dict(opt))
            self._keep_scalar_states(opt, params)
        return opt

    def _keep_scalar_states(self, opt, params) -> None:
        """0-d float32 states (NAdam's mu_product, ASGD's eta and mu) as torch's own steps leave
        them: load_state_dict casts them to a real param's dtype (not a complex one's), which is
        a checkpoint's story (the state_dict_roundtrip check's), not a starting state's."""
        for i, state in self.state.items():
            for key, value in state.items():
                if key != "step" and isinstance(value, float):
                    opt.state[params[i]][key] = torch.tensor(value, dtype=torch.float32)

    def state_dict(self, opt: torch.optim.Optimizer) -> dict:
        """``opt``'s own state_dict with the case's starting state in it (a fresh deep copy)."""
        sd = copy.deepcopy(opt.state_dict())
        dtype = self.torch_dtype
        sd["state"] = {
            i: {
                k: (
                    torch.tensor(v, dtype=torch.float32)  # step and the 0-d scalar states
                    if isinstance(v, float)
                    else to_tensor(v, dtype, self.device)
                )
                for k, v in s.items()
            }
            for i, s in self.state.items()
        }
        return sd
