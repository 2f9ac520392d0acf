"""``fused=True`` on CPU: one call of impl's own single-pass kernel per dtype bucket.

The kernels (``impl._kernels``) need numba, the ``fast`` extra; this module does what they
cannot: it checks devices and dtypes with torch's errors, turns each parameter and its state into
flat element ranges (staging a contiguous copy where the layouts disagree, so a strided view is
updated exactly on its own elements), and applies torch's ``GradScaler`` protocol
(``grad_scale`` / ``found_inf``) around the call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.optim.optimizer import _device_dtype_check_for_fused

EXTRA = "pip install 'verified-optim[fast]'"
#: Classes torch.optim 2.13 offers ``fused=True`` for, and impl has kernels for (CPU).
FUSED_CLASSES = ("SGD", "Adam", "AdamW", "Adagrad")


def kernels():
    """``impl._kernels``, or an ImportError that says which extra to install."""
    try:
        from impl import _kernels
    except ImportError as e:
        raise ImportError(
            f"fused=True runs impl's own single-pass CPU kernels, which need numba "
            f"({e.name} is not installed): {EXTRA}. Without it, the for-loop and foreach paths "
            f"work as before."
        ) from None
    return _kernels


def check_params(name: str, params: Sequence[Tensor]) -> None:
    """torch's refusal of non-floating params and unknown devices, then impl's own: a device
    torch has fused kernels for but impl does not (CUDA today) gets a clear error, never a
    silent fallback to another path. One param of each (device, dtype) is checked."""
    for p in {(p.device, p.dtype): p for p in params}.values():
        _device_dtype_check_for_fused(p)
        if p.device.type != "cpu":
            raise NotImplementedError(
                f"impl.{name}(fused=True) has single-pass kernels for CPU tensors only, and a "
                f"param is on {p.device.type}. Use foreach=True there (bitwise equal to "
                f"torch.optim's foreach path), or torch.optim.{name}(fused=True)."
            )


def check_arguments(op: str, lists: int, **scalars) -> None:
    """torch's own argument parser on the scalars its fused op would receive, so a value of the
    wrong type (``amsgrad=-1.0``, a 1-d ``eps``) is refused with torch's exact TypeError,
    before anything changes. The tensor lists are empty: once the arguments parse, the
    dispatcher finds no tensor and refuses, which is the expected outcome here."""
    with contextlib.suppress(NotImplementedError):
        getattr(torch, op)(*([[]] * lists), **scalars, grad_scale=None, found_inf=None)


def _scalar(value):
    """A tensor lr as the number torch's CPU kernel reads from it."""
    return value.item() if isinstance(value, Tensor) else value


def _tokens():
    import numpy as np

    # bfloat16 travels as uint16 and float16 as int16: the integer type is the kernels' tag.
    return {
        torch.float32: np.empty(0, np.float32),
        torch.float64: np.empty(0, np.float64),
        torch.float16: np.empty(0, np.int16),
        torch.bfloat16: np.empty(0, np.uint16),
    }


_TOKENS: dict = {}


def _dense(t: Tensor) -> bool:
    """The elements fill one block of memory (any dim order, no gaps, no overlap)."""
    expected = 1
    for size, stride in sorted(zip(t.shape, t.stride()), key=lambda s: s[1]):
        if size != 1:
            if stride != expected:
                return False
            expected *= size
    return True


def _refuse_operand(p: Tensor, t: Tensor):
    """A gradient or state tensor of another dtype or size than its param (a loaded state of
    the wrong shape, a gradient with its own ``grad_dtype``): the kernel would read and write
    past its end, so refuse before anything changes."""
    raise RuntimeError(
        f"fused=True needs each gradient and state tensor to have its param's dtype and size "
        f"({p.dtype}, {tuple(p.shape)}); got {t.dtype}, {tuple(t.shape)}"
    )


class _Operands:
    """The kernel's view of one bucket: an address row per parameter, and the staged copies to
    write back once the kernel has run."""

    def __init__(self, written: Sequence[bool]):
        self.written = written
        self.rows: list[list[int]] = []
        self.numels: list[int] = []
        self.write_back: list[tuple[Tensor, Tensor]] = []
        self.keep_alive: list[Tensor] = []
        self.steps: list[Tensor] = []

    def add(self, tensors: Sequence[Tensor | None], step: Tensor | None = None) -> None:
        p = tensors[0]
        dtype, numel = p.dtype, p.numel()
        row = []
        for t in tensors:  # the common case, written for speed: every operand contiguous
            if t is None:
                row.append(0)
                continue
            if t.dtype != dtype or t.numel() != numel:
                _refuse_operand(p, t)
            if t.is_contiguous():
                row.append(t.data_ptr())
            else:
                row = self._strided_row(tensors)
                break
        if step is not None:
            self.steps.append(step)
        self.rows.append(row)
        self.numels.append(numel)

    def _strided_row(self, tensors: Sequence[Tensor | None]) -> list[int]:
        p = tensors[0]
        present = [t for t in tensors if t is not None]
        for t in present:
            if t.dtype != p.dtype or t.numel() != p.numel():
                _refuse_operand(p, t)
        if _dense(p) and all(t.stride() == p.stride() for t in present):
            # one dense block each, elements in the same order: walk the memory directly
            return [0 if t is None else t.data_ptr() for t in tensors]
        row = []  # layouts disagree: run on row-major copies, copy the results back
        for t, written in zip(tensors, self.written):
            if t is None or t.is_contiguous():
                row.append(0 if t is None else t.data_ptr())
                continue
            staged = t.contiguous()
            self.keep_alive.append(staged)
            if written:
                self.write_back.append((t, staged))
            row.append(staged.data_ptr())
        return row

    def arrays(self):
        """(addresses, numels) for the kernel; the steps' addresses last, read now (they are
        incremented after the operands are checked and before the kernel runs)."""
        import numpy as np

        addresses = np.array(self.rows, dtype=np.int64).reshape(len(self.rows), -1)
        if self.steps:
            steps = []
            for step in self.steps:
                if step.dtype != torch.float32:  # the kernel reads a float32 step, as torch's
                    step = step.float()
                    self.keep_alive.append(step)
                steps.append(step.data_ptr())
            addresses = np.ascontiguousarray(
                np.column_stack([addresses, np.array(steps, dtype=np.int64)])
            )
        return addresses, np.array(self.numels, dtype=np.int64)

    def finish(self) -> None:
        for t, staged in self.write_back:
            t.copy_(staged)


def _buckets(params: Sequence[Tensor]) -> dict[torch.dtype, list[int]]:
    out: dict[torch.dtype, list[int]] = {}
    for i, p in enumerate(params):
        out.setdefault(p.dtype, []).append(i)
    return out


#: Elements per thread below which a step runs on fewer threads (torch's ``GRAIN_SIZE``): waking
#: a thread costs more than it saves on a small step.
GRAIN = 32768


def _use_torch_threads(elements: int) -> None:
    import numba

    wanted = min(torch.get_num_threads(), max(1, elements // GRAIN))
    numba.set_num_threads(min(wanted, numba.config.NUMBA_NUM_THREADS))


def run(
    kernel_name: str,
    params: Sequence[Tensor],
    operands: Sequence[Sequence[Tensor | None]],
    written: Sequence[bool],
    *hyperparameters,
    steps: Sequence[Tensor] | None = None,
    grad_scale: Tensor | None = None,
    found_inf: Tensor | None = None,
    per_tensor=None,
) -> None:
    """One fused step over ``params``. ``operands[i]`` is param i's tensors in the kernel's
    order (param, grad, state...; None for an absent one), ``written`` says which the kernel
    writes besides the grad (written back only under a grad scale). ``per_tensor``: booleans
    indexed like ``params``, an extra kernel argument before the dtype token (SGD's first-step
    flags).

    GradScaler's protocol, as torch's fused optimizers run it: ``step`` += 1, the kernel runs
    unless ``found_inf`` is 1 (then nothing else changes), ``step`` -= ``found_inf``.
    """
    k = kernels()
    import numpy as np

    if not _TOKENS:
        _TOKENS.update(_tokens())
    skipped = found_inf is not None and found_inf.item() == 1.0
    scale = 0.0 if grad_scale is None else float(grad_scale.item())
    written = [written[0], scale > 0.0, *written[2:]]
    buckets = []  # every operand is checked before anything changes
    for dtype, idx in _buckets(params).items():
        bucket = _Operands(written)
        for i in idx:
            bucket.add(operands[i], steps[i] if steps else None)
        buckets.append((dtype, idx, bucket))
    if steps:
        torch._foreach_add_(list(steps), 1)
    if not skipped:
        kernel = getattr(k, kernel_name)
        flags = None if per_tensor is None else np.array(per_tensor, dtype=np.bool_)
        for dtype, idx, bucket in buckets:
            addresses, numels = bucket.arrays()
            _use_torch_threads(int(numels.sum()))
            extra = () if flags is None else (flags[idx],)
            kernel(addresses, numels, *extra, _TOKENS[dtype], *hyperparameters, scale)
            bucket.finish()
    if steps and found_inf is not None:
        torch._foreach_sub_(list(steps), [found_inf] * len(steps))
