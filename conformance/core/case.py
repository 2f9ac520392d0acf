"""A drawn case as plain data, so that a failure can be replayed without Hypothesis.

Every number is a Python float (float64) holding a value that is exactly representable in the
case's dtype, so ``repr(case)`` is a lossless constructor call: the repro snippet of a failure
is ``Case(...)`` pasted into a check function.
"""

from __future__ import annotations

import copy
import enum
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


class Purpose(str, enum.Enum):
    """What a case is drawn for; it decides the domains (``conformance.domains``) and the shape of
    the values (``strategies.cases``)."""

    # the whole domain torch accepts (parity with torch.optim), tensor lr and sparse gradients
    # wherever torch takes them
    TORCH = "torch"
    # the same domain for properties that hold whatever the numbers (no tensor lr)
    INVARIANT = "invariant"
    # the well-conditioned domain of the derived one-step bounds: one sign for params, gradients
    # and momentum-like state, magnitudes in [2**-20, 2**20], decay rates in {0} U [0.5, 1)
    SPEC = "spec"
    # SPEC over several steps, and no weight decay (a param that changes sign would cancel)
    SPEC_TRAJECTORY = "spec_trajectory"
    # SPEC's magnitudes with signs as drawn (room to scale: Muon, LBFGS)
    BOUNDED = "bounded"
    # BOUNDED, and at most 2 Newton-Schulz steps (Muon's a-priori bfloat16 bound)
    SINGULAR_VALUES = "singular_values"

    @property
    def against_spec(self) -> bool:
        """Judged against the spec's exact value within a derived bound."""
        return self in (Purpose.SPEC, Purpose.SPEC_TRAJECTORY)

    @property
    def bounded(self) -> bool:
        """Magnitudes within the spec domain's bounds."""
        return self.against_spec or self in (Purpose.BOUNDED, Purpose.SINGULAR_VALUES)


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
    if t.numel() == 0:
        # allocated by torch: numpy's empty arrays have all-zero strides (view_as_complex rejects
        # them) and torch 2.13 segfaults adding a sparse tensor into one
        # (docs/torch-findings.md#finding-14)
        t = torch.empty(t.shape[:-1] if dtype.is_complex else t.shape, dtype=dtype)
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
    """float64 numpy copy; complex tensors as their ``view_as_real`` pairs; a sparse tensor
    densified as its coalesced form (repeated indices summed in its dtype, as the optimizers
    that coalesce sum them)."""
    t = t.detach()
    if t.is_sparse:
        t = t.coalesce().to_dense()
    if t.is_complex():
        t = torch.view_as_real(t)
    return t.cpu().double().numpy().copy()


@dataclass(frozen=True)
class Sparse:
    """A sparse COO gradient of a param of shape ``values.shape[1:]`` extended on the left:
    ``indices`` (sparse dims x nnz) name the entries, ``values`` (nnz, *dense dims) hold them.
    Indices may repeat (an uncoalesced gradient, as ``nn.Embedding(sparse=True)`` makes for a
    repeated token); ``coalesced``: the tensor is built and then ``coalesce()``d."""

    indices: np.ndarray
    values: np.ndarray
    coalesced: bool = False

    def __neg__(self) -> Sparse:
        return replace(self, values=-self.values)

    def __repr__(self) -> str:
        return (
            f"Sparse(np.array({self.indices.tolist()!r}, dtype=np.int64).reshape"
            f"({self.indices.shape!r}), {_literal(self.values)}, {self.coalesced!r})"
        )

    def touched(self, shape: tuple) -> np.ndarray:
        """Boolean mask of the param's elements the gradient names."""
        mask = np.zeros(shape, dtype=bool)
        rows = tuple(self.indices)
        if self.indices.shape[1]:
            mask[rows] = True
        return mask


def to_sparse(g: Sparse, shape: tuple, dtype: torch.dtype, device: str) -> Tensor:
    # storage torch owns, as autograd's gradients have: from_numpy's is not resizable, and
    # torch's foreach Nesterov adds into p.grad in place, which resizes a sparse one
    values = to_tensor(g.values, dtype, device).clone()
    indices = torch.tensor(g.indices.tolist(), dtype=torch.int64, device=device)
    indices = indices.reshape(g.indices.shape)
    t = torch.sparse_coo_tensor(indices, values, shape, check_invariants=True)
    return t.coalesce() if g.coalesced else t


@dataclass(frozen=True)
class Objective:
    """A strictly convex quadratic per param, for optimizers that step with a closure (LBFGS):
    ``f(x) = sum_i (x_i · A_i x_i / 2 - b_i · x_i)`` over the flattened params, evaluated in the
    case's dtype with torch ops (so both sides of a comparison see the same bits), minimised at
    ``x_i = A_i^-1 b_i``. ``hessians[i]`` is symmetric positive definite."""

    hessians: list[np.ndarray]
    offsets: list[np.ndarray]

    def __repr__(self) -> str:
        hessians = ", ".join(_literal(a) for a in self.hessians)
        offsets = ", ".join(_literal(b) for b in self.offsets)
        return f"Objective([{hessians}], [{offsets}])"

    def minimiser(self, i: int) -> np.ndarray:
        return np.linalg.solve(self.hessians[i], self.offsets[i])

    def evaluate(self, params: list[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """(loss, gradients) at ``params``, in their dtype."""
        loss, grads = torch.zeros((), dtype=params[0].dtype), []
        for p, a, b in zip(params, self.hessians, self.offsets, strict=True):
            a, b = torch.from_numpy(a).to(p.dtype), torch.from_numpy(b).to(p.dtype)
            x = p.detach().reshape(-1)
            ax = a @ x
            grads.append((ax - b).reshape(p.shape))
            loss = loss + (x @ ax / 2 - b @ x)
        return loss, grads

    def closure(self, params: list[Tensor], calls: list | None = None):
        """The closure ``step`` calls: sets every ``p.grad`` and returns the loss. ``calls``
        (a list) receives a copy of the params at every call."""

        @torch.no_grad()
        def closure():
            if calls is not None:
                calls.append([p.detach().clone() for p in params])
            loss, grads = self.evaluate(params)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            return loss

        return closure


@dataclass(frozen=True)
class Case:
    """Inputs of one check: everything an optimizer run depends on.

    - ``groups``: hyperparameters per param group, with ``"params"`` as indices into ``params``;
    - ``state``: starting state per param index in torch's state_dict layout (``step`` a float);
      a param without an entry starts fresh;
    - ``grads[t][i]``: the gradient of param ``i`` at step ``t`` (``None``: no gradient; a
      ``Sparse``: a sparse COO gradient);
    - ``foreach``/``torch_foreach``: the path for impl and for torch.optim;
    - ``tensor_lr``: pass each group's lr as a float32 0-d tensor, as torch allows;
    - ``tensor_betas``: pass each group's betas as float64 0-d tensors, as torch's Adam and
      AdamW allow (drawn with values every dtype holds exactly: ``strategies.cases``);
    - ``objective``: for optimizers that step with a closure (LBFGS), the loss the closure
      evaluates; ``grads`` then only sets the number of steps (every entry ``None``);
    - ``placements``: the distributed check's layout of each param on its gloo mesh;
    - ``grad_scale``/``found_inf``: GradScaler's inputs, for a subject whose step takes them (the
      fused paths): set on the optimizer before every step as the float32 tensors GradScaler
      sets, ``grads`` then being the *scaled* gradients g·grad_scale; ``found_inf[t]`` = 1.0
      skips step ``t`` (nothing may change). None: not set (a plain ``step()``).
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
    objective: Objective | None = None
    # distributed check: each param's layout on the gloo mesh ("shard": Shard(0), "replicate",
    # "tensor": a plain tensor); None elsewhere (conformance.distributed)
    placements: tuple[str, ...] | None = None
    grad_scale: float | None = None
    found_inf: tuple[float, ...] = ()
    tensor_betas: bool = False

    def __repr__(self) -> str:
        def arr(a):
            if isinstance(a, Sparse):
                return repr(a)
            return "None" if a is None else _literal(np.asarray(a))

        state = {
            i: {k: (v if isinstance(v, float | int) else arr(v)) for k, v in s.items()}
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
            f" tensor_lr={self.tensor_lr!r}"
            + (", tensor_betas=True" if self.tensor_betas else "")
            + ("" if self.objective is None else f",\n     objective={self.objective!r}")
            + ("" if self.placements is None else f",\n     placements={self.placements!r}")
            + (
                ""
                if self.grad_scale is None
                else f",\n     grad_scale={self.grad_scale!r}, found_inf={self.found_inf!r}"
            )
            + ")"
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
        return [self.make_grad(g, i) for i, g in enumerate(self.grads[t])]

    def step(self, opt, params: list[Tensor], t: int, calls: list | None = None):
        """Step ``t``: set the drawn gradients and call ``opt.step()``, or call
        ``opt.step(closure)`` where the case has an objective. Returns the gradients set (for a
        closure, those of its last call)."""
        if self.objective is None:
            grads = self.make_grads(t)
            for p, g in zip(params, grads, strict=True):
                p.grad = g
            self.set_grad_scaling(opt, t)
            opt.step()
            return grads
        opt.step(self.objective.closure(params, calls))
        return [p.grad for p in params]

    def set_grad_scaling(self, opt, t: int) -> None:
        """What ``GradScaler.step`` sets on an optimizer whose step takes it, before step
        ``t``: ``opt.grad_scale`` and ``opt.found_inf``, float32 0-d tensors on the device."""
        if self.grad_scale is None:
            return
        opt.grad_scale = torch.tensor(self.grad_scale, dtype=torch.float32, device=self.device)
        opt.found_inf = torch.tensor(self.skipped(t), dtype=torch.float32, device=self.device)

    def skipped(self, t: int) -> float:
        """1.0 where GradScaler found an inf at step ``t`` (the step must change nothing)."""
        return self.found_inf[t] if self.grad_scale is not None else 0.0

    def unscaled(self, g):
        """A gradient as the math sees it: the scaled one divided by ``grad_scale`` (a power
        of two, and the strategies keep g·scale normal in the dtype, so this is exact)."""
        if g is None or self.grad_scale is None:
            return g
        return np.asarray(g / self.grad_scale)

    def make_grad(self, g, i: int) -> Tensor | None:
        if isinstance(g, Sparse):
            return to_sparse(g, self.shape(i), self.torch_dtype, self.device)
        return None if g is None else to_tensor(g, self.torch_dtype, self.device)

    def shape(self, i: int) -> tuple:
        """Param ``i``'s logical shape (complex: without the trailing pair axis)."""
        values = self.params[i].values
        return values.shape[:-1] if self.torch_dtype.is_complex else values.shape

    def param_groups(self, params: list[Tensor]) -> list[dict]:
        groups = []
        for g in self.groups:
            g = dict(g)
            if self.tensor_lr:
                g["lr"] = torch.tensor(g["lr"], dtype=torch.float32)
            if self.tensor_betas:
                g["betas"] = tuple(torch.tensor(b, dtype=torch.float64) for b in g["betas"])
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
                    v  # SparseAdam's step, a Python int
                    if isinstance(v, int)
                    else torch.tensor(v, dtype=torch.float32)  # step and the 0-d scalar states
                    if isinstance(v, float)
                    else to_tensor(v, dtype, self.device)
                )
                for k, v in s.items()
            }
            for i, s in self.state.items()
        }
        return sd
