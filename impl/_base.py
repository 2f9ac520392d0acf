"""What every impl optimizer shares: validation, lazy state, and the path dispatch.

Subclasses declare their state and write ``_update`` once, in terms of ``impl._ops``; this class
decides whether it runs per parameter (``FOR_LOOP``) or per (device, dtype) bucket (``FOREACH``),
exactly where torch.optim would take its for-loop or foreach path.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.optimizer import _default_to_fused_or_foreach

from impl import _fused
from impl._ops import FOR_LOOP, FOREACH, Ops, _as_real, is_dtensor

# torch.optim flags whose code paths are not written here (fused: only where a class has
# kernels). Accepting them and running the for-loop path would silently change numerics
# (fused) or semantics (differentiable).
UNSUPPORTED_FLAGS = ("fused", "capturable", "differentiable")


def scalar_dtype(fused=False) -> torch.dtype:
    """The dtype of torch's ``step`` tensors: float64 only under a float64 default dtype, and
    float32 always on the fused path."""
    if fused:
        return torch.float32
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step(group: dict | None = None, p: Tensor | None = None) -> Tensor:
    """A zero ``step``: on the CPU, or for a fused group float32 on the param's device (torch)."""
    if group is not None and group.get("fused"):
        return torch.zeros((), dtype=scalar_dtype(fused=True), device=p.device)
    return torch.tensor(0.0, dtype=scalar_dtype())


def check_tensor_lr(lr) -> None:
    if isinstance(lr, Tensor) and lr.numel() != 1:
        raise ValueError("Tensor lr must be 1-element")


def check_adam_family(lr, eps, betas, weight_decay) -> None:
    """The validation Adam, AdamW, Adamax, NAdam and RAdam share, in torch's order and words."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")


def check_fused_combinations(name: str, *, fused, foreach, differentiable) -> None:
    """torch's own errors for contradictory flags, raised before ours so the messages match."""
    if fused and differentiable:
        raise RuntimeError("`fused` does not support `differentiable`")
    if fused and foreach:
        raise RuntimeError("`fused` and `foreach` cannot be `True` together.")


def to_scalar(x):
    """torch's ``_to_scalar``: a one-element tensor hyperparameter becomes 0-d, floats stay."""
    if isinstance(x, Tensor) and x.dim() != 0:
        return x.squeeze()
    return x


def _layout_key(p: Tensor) -> tuple:
    """What a foreach kernel cannot mix beside device and dtype: DTensors with plain tensors
    ("got mixed torch.Tensor and DTensor", pytorch #183207), or DTensors of different meshes or
    placements (FSDP2 shards most params on dim 0 and replicates others)."""
    if is_dtensor(p):
        return (p.device_mesh, p.placements)
    return ()


def _buckets(params: list[Tensor]) -> Iterable[list[int]]:
    """The foreach path's buckets: by device and dtype as torch's, and by layout."""
    by_device_dtype_layout: dict[tuple, list[int]] = {}
    for i, p in enumerate(params):
        by_device_dtype_layout.setdefault((p.device, p.dtype, _layout_key(p)), []).append(i)
    return by_device_dtype_layout.values()


class VerifiedOptimizer(Optimizer):
    """Base class: a ``torch.optim.Optimizer`` whose subclasses write their math once."""

    #: Complex parameters are updated through ``view_as_real`` (torch does this for all but SGD);
    #: the update calls ``ops.as_real`` where torch's for-loop path views them.
    complex_as_real = True
    #: Message of the RuntimeError for a sparse gradient, or None if sparse gradients are allowed.
    sparse_error: str | None = None
    #: The update takes a foreach bucket with sparse gradients (SGD, as torch's foreach path).
    foreach_takes_sparse: bool = False
    #: Group keys that checkpoints from older torch versions may lack, with torch's fill-ins.
    group_fill_ins: dict = {}
    #: The class has single-pass kernels for ``fused=True`` (``_fused_update``).
    has_fused_kernels: bool = False

    # -- subclass interface -------------------------------------------------------------------
    def _state_keys(self, group: dict) -> tuple[str, ...]:
        """State entries ``_update`` receives, as lists aligned with the params."""
        raise NotImplementedError

    def _init_state(self, group: dict, p: Tensor, state: dict) -> None:
        """Fill a parameter's empty state on its first step with a gradient (default: nothing;
        SGD's momentum buffer is born inside its first update, from the gradient)."""

    def _update(self, ops: Ops, group: dict, params, grads, state: dict[str, list]) -> None:
        raise NotImplementedError

    def _fused_update(self, group: dict, params, grads, state: dict[str, list]) -> None:
        """The fused step of a group (classes with ``has_fused_kernels``), via ``impl._fused``."""
        raise NotImplementedError

    def _check_grads(self, group: dict, grads: list[Tensor]) -> None:
        if self.sparse_error is not None and any(g.is_sparse for g in grads):
            raise RuntimeError(self.sparse_error)

    def _enable_fused(self, fused) -> None:
        """For a fused optimizer: numba must be there (an ImportError naming the extra, at
        construction rather than at the first step), and GradScaler may hand the step its
        ``grad_scale`` and ``found_inf``, as it does torch's fused optimizers."""
        if fused:
            _fused.kernels()
            self._step_supports_amp_scaling = True

    def _amp_tensors(self) -> dict:
        return {
            "grad_scale": getattr(self, "grad_scale", None),
            "found_inf": getattr(self, "found_inf", None),
        }

    # -- torch.optim.Optimizer ----------------------------------------------------------------
    def add_param_group(self, param_group: dict) -> None:
        _reject_unsupported_flags(self, {**self.defaults, **param_group})
        super().add_param_group(param_group)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            for key, value in self.group_fill_ins.items():
                group.setdefault(key, value)
            for p in group["params"]:
                p_state = self.state.get(p, {})
                if "step" in p_state and not torch.is_tensor(p_state["step"]):
                    step = new_step(group, p)
                    p_state["step"] = step.fill_(float(p_state["step"]))

    def step(self, closure=None):
        """Perform a single optimization step.

        Args:
            closure (Callable, optional): A closure that reevaluates the model and returns the
                loss.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        work = [
            (group, [p for p in group["params"] if p.grad is not None])
            for group in self.param_groups
        ]
        # Validate everything before touching anything: a bad group must not leave earlier
        # groups stepped and later ones not (torch raises mid-loop; we raise first).
        for group, params in work:
            _reject_unsupported_flags(self, group)
            if group.get("fused"):
                _fused.check_params(type(self).__name__, params)
            self._check_grads(group, [p.grad for p in params])

        with torch.no_grad():
            for group, params in work:
                if params:
                    self._step_group(group, params)
        return loss

    # -- dispatch -----------------------------------------------------------------------------
    def _step_group(self, group: dict, params: list[Tensor]) -> None:
        keys = self._state_keys(group)
        if keys:  # stateless groups (SGD without momentum) must leave self.state empty, as torch
            for p in params:
                if len(self.state[p]) == 0:
                    self._init_state(group, p, self.state[p])
        grads = [p.grad for p in params]
        state = {key: [self.state[p].get(key) for p in params] for key in keys}
        if group.get("fused"):
            self._fused_update(group, params, grads, state)
        else:
            self._step_paths(group, params, grads, state)
        # Entries the update created (SGD's first momentum buffers) become the parameters' state
        # once the whole group has stepped: torch stores them after its functional call, so a
        # step that raises half-way keeps none of them (its params already moved).
        for key, values in state.items():
            for p, value in zip(params, values):
                if value is not None and key not in self.state[p]:
                    self.state[p][key] = value

    def _step_paths(self, group: dict, params, grads, state: dict[str, list]) -> None:
        """The for-loop or foreach path, where torch.optim would take it."""
        foreach = group["foreach"]
        if foreach is None:
            _, foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)
        # torch's foreach kernels take no sparse tensors: a (device, dtype) bucket with a sparse
        # gradient runs the for-loop path, unless the update routes them itself (SGD)
        buckets = _buckets(params) if foreach else [[i] for i in range(len(params))]
        for idx in buckets:
            if foreach and (self.foreach_takes_sparse or not any(grads[i].is_sparse for i in idx)):
                runs = [(FOREACH, idx)]
            else:
                runs = [(FOR_LOOP, [i]) for i in idx]
            for ops, run in runs:
                run_state = {key: [values[i] for i in run] for key, values in state.items()}
                self._run(ops, group, [params[i] for i in run], [grads[i] for i in run], run_state)
                for key, values in run_state.items():
                    for i, value in zip(run, values):
                        state[key][i] = value

    def _run(self, ops: Ops, group: dict, params, grads, state: dict[str, list]) -> None:
        """One update; entries it creates are written into ``state``'s lists."""
        given, layouts = state, [_shard_layout(p, grads[j], state, j) for j, p in enumerate(params)]
        if any(layouts):
            params, grads, state = _local_shards(params, grads, state, layouts)
        if self.complex_as_real and ops.views_complex_up_front:
            params = [_as_real(p) for p in params]
            grads = [_as_real(g) for g in grads]
            state = {key: [_as_real(t) for t in values] for key, values in state.items()}
        self._update(ops, group, params, grads, state)
        for key, values in state.items():
            for j, value in enumerate(values):
                if given[key][j] is None:
                    given[key][j] = _as_shard(value, layouts[j])


# -- DTensor params (FSDP2): the update runs on each rank's local shard ------------------------
def _shard_layout(p: Tensor, grad: Tensor, state: dict[str, list], j: int):
    """``p``'s DTensor spec when the update can run on its local shard: an elementwise update
    reads and writes only the elements a rank holds, so on the local tensors it computes what
    torch computes on the DTensors (whose pointwise ops run the same kernels on the same local
    tensors), and runs where DTensor cannot (``index_put_``, ``_foreach_copy_``, a 0-d
    ``view_as_real``, foreach lists mixing DTensors and tensors). Only when the gradient and
    every state tensor are laid out as ``p``, with no pending reduction (``Partial``); else
    None, and the DTensors go through DTensor's own dispatch."""
    if not is_dtensor(p):
        return None
    spec = (p.device_mesh, p.placements, p.shape, p.stride())
    if any(placement.is_partial() for placement in p.placements):
        return None
    for t in [grad, *(values[j] for values in state.values())]:
        if is_dtensor(t) and (t.device_mesh, t.placements, t.shape) == spec[:3]:
            continue
        if t is None or (isinstance(t, Tensor) and not is_dtensor(t) and t.dim() == 0):
            continue  # no state yet, or a 0-d step counter (a plain tensor, as torch's)
        return None
    return spec


def _local(t):
    return t.to_local() if is_dtensor(t) else t


def _local_shards(params, grads, state, layouts):
    def local(values):
        return [_local(t) if layouts[j] else t for j, t in enumerate(values)]

    return local(params), local(grads), {key: local(values) for key, values in state.items()}


def _as_shard(value, layout):
    """A state tensor the update created on a local shard, as a DTensor laid out as its param."""
    if layout is None or value is None or is_dtensor(value):
        return value
    from torch.distributed.tensor import DTensor

    mesh, placements, shape, stride = layout
    return DTensor.from_local(value, mesh, placements, run_check=False, shape=shape, stride=stride)


def _reject_unsupported_flags(optimizer: VerifiedOptimizer, group: dict) -> None:
    name = type(optimizer).__name__
    for flag in UNSUPPORTED_FLAGS:
        if flag == "fused" and optimizer.has_fused_kernels:
            continue
        if group.get(flag):
            raise NotImplementedError(
                f"impl.{name} does not implement {flag}=True: only the for-loop path "
                f"(foreach=False/None) and the foreach path (foreach=True) are written and "
                f"verified here. Use torch.optim.{name} for {flag}=True."
            )
