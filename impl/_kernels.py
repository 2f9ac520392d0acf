"""The single-pass CPU kernels behind ``fused=True`` (numba; the ``fast`` extra).

Each kernel takes one (dtype) bucket of parameters as raw addresses, so a step is one call
whatever the number of tensors, and walks every element once: load p, g and the state, update
them in registers, store. float32 and float64 compute in their own precision; float16 and
bfloat16 arrive as integer views (numpy has no bfloat16), are widened exactly to float32,
computed there and rounded to nearest-even once on store, as torch's fused kernels do.

The arithmetic follows impl's for-loop path op for op (the same fused multiply-adds, through
``llvm.fma``), except that ``sqrt`` is the correctly rounded one (torch's ``Tensor.sqrt`` is not
on this CPU, TORCH_NOTES) and the half types round once instead of after every op. The bias
corrections are computed per tensor in double, from its float32 ``step``, as torch's fused
kernels compute them. The result is bitwise equal to torch 2.13's fused vector bodies where
those are right (tests/test_impl_fused.py; docs/torch-findings.md, findings 25-26). Work is
split into ``CHUNK``-element tasks across numba's threads; the result does not depend on the
split (every element is independent).

Compiled on first use and cached on disk (``cache=True``), so later processes load it in
milliseconds (``nox -s bench`` measures both).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

#: Elements per parallel task: large enough to amortise scheduling, small enough that one big
#: tensor spreads over every thread.
CHUNK = 1 << 14

# -- machine-level helpers ---------------------------------------------------------------------


@intrinsic
def _pointer(typingctx, address, token):
    """``address`` (an int64 from ``Tensor.data_ptr()``) as a pointer to ``token``'s dtype."""
    signature = types.CPointer(token.dtype)(address, token)

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return signature, codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a*b + c`` rounded once (``llvm.fma``), the way torch's ``add_(alpha=)``, ``addcmul_``
    and ``lerp_`` round."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        ty = args[0].type
        function = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty] * 3))
        return builder.call(function, args)

    return a(a, b, c), codegen


@intrinsic
def _f16_bits_to_f32(typingctx, bits):
    """IEEE binary16 bits (int16) widened to float32: exact (``fpext``)."""

    def codegen(context, builder, sig, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_to_f16_bits(typingctx, value):
    """float32 rounded to nearest-even binary16 (``fptrunc``), as int16 bits."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.int16(value), codegen


@intrinsic
def _u32_as_f32(typingctx, bits):
    """The low 32 bits of an integer, read as a float32."""

    def codegen(context, builder, sig, args):
        return builder.bitcast(builder.trunc(args[0], ir.IntType(32)), ir.FloatType())

    return types.float32(bits), codegen


@intrinsic
def _f32_as_u32(typingctx, value):
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(value), codegen


@njit(inline="always")
def _bf16_bits_to_f32(bits):
    """bfloat16 bits (uint16) widened to float32: the same bits, 16 places up (exact)."""
    return _u32_as_f32(np.uint32(bits) << np.uint32(16))


@njit
def _f32_to_bf16_bits(value):
    """float32 rounded to nearest-even bfloat16 (c10::BFloat16's rule, NaN -> 0x7FC0). Written
    without a branch on NaN, so that LLVM vectorises it (a select)."""
    bits = _f32_as_u32(value)
    bias = ((bits >> np.uint32(16)) & np.uint32(1)) + np.uint32(0x7FFF)
    rounded = np.uint16((bits + bias) >> np.uint32(16))
    return rounded if value == value else np.uint16(0x7FC0)


# -- storage <-> compute precision, chosen by the array's dtype at compile time ---------------
# bfloat16 travels as uint16, float16 as int16: the integer type is the tag.


def load(array, i):
    """Element ``i`` in compute precision (float32 for the half types)."""


@overload(load, inline="always")
def _load(array, i):
    if array.dtype == types.uint16:
        return lambda array, i: _bf16_bits_to_f32(array[i])
    if array.dtype == types.int16:
        return lambda array, i: _f16_bits_to_f32(array[i])
    return lambda array, i: array[i]


def store(array, i, value):
    """Round ``value`` once into the array's storage type."""


@overload(store)
def _store(array, i, value):
    if array.dtype == types.uint16:

        def store_bf16(array, i, value):
            array[i] = _f32_to_bf16_bits(value)

        return store_bf16
    if array.dtype == types.int16:

        def store_f16(array, i, value):
            array[i] = _f32_to_f16_bits(value)

        return store_f16

    def store_native(array, i, value):
        array[i] = value

    return store_native


def opmath(token, value):
    """A double hyperparameter in the compute precision of ``token``'s storage type."""


@overload(opmath, inline="always")
def _opmath(token, value):
    if token.dtype == types.float64:
        return lambda token, value: np.float64(value)
    return lambda token, value: np.float32(value)


@njit(inline="always")
def _maximum(a, b):
    """torch.maximum: NaN if either is NaN (``std::max``, in torch's scalar tail, is not).
    Selects, not branches, so that LLVM vectorises it."""
    larger = b if b > a else a
    larger = b if b != b else larger
    return a if a != a else larger


@njit(inline="always")
def _view(address, first, count, token):
    """Elements ``first`` to ``first + count`` of a tensor as a C array indexed from 0: a loop
    from 0 lets LLVM drop numba's negative-index wraparound and vectorise."""
    return numba.carray(_pointer(address + first * token.itemsize, token), count)


_STEP_TOKEN = np.empty(0, np.float32)


@njit(inline="always")
def _step_count(address):
    """A parameter's float32 ``step`` (already incremented) as a double, as torch's kernels
    read it."""
    return np.float64(_view(address, 0, 1, _STEP_TOKEN)[0])


@njit(cache=True)
def _tasks(numels):
    """(tensor, first element) of every CHUNK-sized task, in order."""
    count = 0
    for n in numels:
        count += (n + CHUNK - 1) // CHUNK
    tensor = np.empty(count, np.int64)
    start = np.empty(count, np.int64)
    k = 0
    for t in range(numels.size):
        for s in range(0, numels[t], CHUNK):
            tensor[k] = t
            start[k] = s
            k += 1
    return tensor, start


# -- the kernels -------------------------------------------------------------------------------
# Addresses: int64[tensors, operands]; numels: int64[tensors]; token: an empty array of the
# storage dtype (it picks the specialisation). ``grad_scale`` > 0: divide each gradient by it and
# store the quotient back into the gradient, as torch's fused kernels do under GradScaler.


# Conditional stores (the grad under a grad scale, amsgrad's maximum, SGD's buffer) keep LLVM
# from vectorising a loop over 16-bit elements, so each kernel's element loop is an inline
# function called once per combination of those flags, with the flags as constants: every loop
# LLVM sees stores unconditionally. The other flags are branch-free selects.


@njit(inline="always")
def _adam_span(p, g, m, v, vmax, count, scaled, amsgrad, c, shared, neg_step_size, bc2_sqrt):
    scale, decay, shrink, w, w_minus_one, b2, one_minus_b2, eps = c
    maximize, decoupled, small_weight = shared
    for i in range(count):
        grad = load(g, i)
        if scaled:
            grad = grad / scale
            store(g, i, grad)
        grad = -grad if maximize else grad
        param = load(p, i)
        param = param * shrink if decoupled else param
        grad = fma(decay, param, grad) if decay != 0 else grad
        mean = load(m, i)
        # torch's lerp: fma(w, g - m, m) for |w| < 0.5, else fma(w - 1, g - m, g)
        if small_weight:
            mean = fma(w, grad - mean, mean)
        else:
            mean = fma(w_minus_one, grad - mean, grad)
        second = fma(one_minus_b2 * grad, grad, load(v, i) * b2)
        store(m, i, mean)
        store(v, i, second)
        if amsgrad:
            second = _maximum(load(vmax, i), second)
            store(vmax, i, second)
        denom = math.sqrt(second) / bc2_sqrt + eps
        store(p, i, param + (neg_step_size * mean) / denom)


@njit(parallel=True, cache=True, error_model="numpy")
def adam(
    addresses,
    numels,
    token,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    decoupled,
    amsgrad,
    maximize,
    grad_scale,
):
    """Operands: param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq (0 unless amsgrad), step."""
    tensor, start = _tasks(numels)
    w = opmath(token, 1.0 - beta1)
    c = (
        opmath(token, grad_scale),
        opmath(token, 0.0 if decoupled else weight_decay),
        opmath(token, 1.0 - lr * weight_decay),
        w,
        w - opmath(token, 1.0),
        opmath(token, beta2),
        opmath(token, 1.0 - beta2),
        opmath(token, eps),
    )
    shared = (maximize, decoupled and weight_decay != 0.0, abs(w) < opmath(token, 0.5))
    scaled = grad_scale > 0.0
    for k in prange(tensor.size):
        t, first = tensor[k], start[k]
        count = min(CHUNK, numels[t] - first)
        p = _view(addresses[t, 0], first, count, token)
        g = _view(addresses[t, 1], first, count, token)
        m = _view(addresses[t, 2], first, count, token)
        v = _view(addresses[t, 3], first, count, token)
        vmax = _view(addresses[t, 4], first, count if amsgrad else 0, token)
        step = _step_count(addresses[t, 5])
        s = opmath(token, -(lr / (1.0 - beta1**step)))
        b = opmath(token, math.sqrt(1.0 - beta2**step))
        if scaled:
            if amsgrad:
                _adam_span(p, g, m, v, vmax, count, True, True, c, shared, s, b)
            else:
                _adam_span(p, g, m, v, vmax, count, True, False, c, shared, s, b)
        elif amsgrad:
            _adam_span(p, g, m, v, vmax, count, False, True, c, shared, s, b)
        else:
            _adam_span(p, g, m, v, vmax, count, False, False, c, shared, s, b)


@njit(inline="always")
def _sgd_span(p, g, buf, count, scaled, momentum, first, c, maximize, nesterov):
    scale, decay, mu, one_minus_dampening, neg_lr = c
    for i in range(count):
        grad = load(g, i)
        if scaled:
            grad = grad / scale
            store(g, i, grad)
        grad = -grad if maximize else grad
        param = load(p, i)
        grad = fma(decay, param, grad) if decay != 0 else grad
        if momentum:
            # loaded even on a first step (then discarded): a conditional 16-bit load would
            # keep LLVM from vectorising the loop
            carried = fma(one_minus_dampening, grad, load(buf, i) * mu)
            velocity = grad if first else carried
            store(buf, i, velocity)
            grad = fma(mu, velocity, grad) if nesterov else velocity
        store(p, i, fma(neg_lr, grad, param))


@njit(parallel=True, cache=True, error_model="numpy")
def sgd(
    addresses,
    numels,
    first_step,
    token,
    lr,
    momentum,
    dampening,
    weight_decay,
    nesterov,
    maximize,
    grad_scale,
):
    """Operands: param, grad, momentum_buffer (0 without momentum). ``first_step[t]``: the
    buffer is new, so it becomes the gradient (no dampening on step 1)."""
    tensor, start = _tasks(numels)
    c = (
        opmath(token, grad_scale),
        opmath(token, weight_decay),
        opmath(token, momentum),
        opmath(token, 1.0 - dampening),
        opmath(token, -lr),
    )
    scaled = grad_scale > 0.0
    has_momentum = momentum != 0.0
    for k in prange(tensor.size):
        t, first = tensor[k], start[k]
        count = min(CHUNK, numels[t] - first)
        p = _view(addresses[t, 0], first, count, token)
        g = _view(addresses[t, 1], first, count, token)
        buf = _view(addresses[t, 2], first, count if has_momentum else 0, token)
        new = first_step[t]
        if scaled:
            if has_momentum:
                _sgd_span(p, g, buf, count, True, True, new, c, maximize, nesterov)
            else:
                _sgd_span(p, g, buf, count, True, False, new, c, maximize, nesterov)
        elif has_momentum:
            _sgd_span(p, g, buf, count, False, True, new, c, maximize, nesterov)
        else:
            _sgd_span(p, g, buf, count, False, False, new, c, maximize, nesterov)


@njit(inline="always")
def _adagrad_span(p, g, s, count, scaled, c, maximize, neg_clr):
    scale, decay, eps = c
    for i in range(count):
        grad = load(g, i)
        if scaled:
            grad = grad / scale
            store(g, i, grad)
        grad = -grad if maximize else grad
        param = load(p, i)
        grad = fma(decay, param, grad) if decay != 0 else grad
        total = fma(grad, grad, load(s, i))
        store(s, i, total)
        std = math.sqrt(total) + eps
        store(p, i, param + (neg_clr * grad) / std)


@njit(parallel=True, cache=True, error_model="numpy")
def adagrad(addresses, numels, token, lr, lr_decay, eps, weight_decay, maximize, grad_scale):
    """Operands: param, grad, sum, step."""
    tensor, start = _tasks(numels)
    c = (opmath(token, grad_scale), opmath(token, weight_decay), opmath(token, eps))
    scaled = grad_scale > 0.0
    for k in prange(tensor.size):
        t, first = tensor[k], start[k]
        count = min(CHUNK, numels[t] - first)
        p = _view(addresses[t, 0], first, count, token)
        g = _view(addresses[t, 1], first, count, token)
        s = _view(addresses[t, 2], first, count, token)
        step = _step_count(addresses[t, 3])
        neg_clr = opmath(token, -lr / (1.0 + (step - 1.0) * lr_decay))
        if scaled:
            _adagrad_span(p, g, s, count, True, c, maximize, neg_clr)
        else:
            _adagrad_span(p, g, s, count, False, c, maximize, neg_clr)


# -- exposed for the tests of the half-type conversions ---------------------------------------


@njit(cache=True)
def widen(bits):
    """Integer-view half values (uint16: bfloat16, int16: float16) as float32."""
    out = np.empty(bits.size, np.float32)
    for i in range(bits.size):
        out[i] = load(bits, i)
    return out


@njit(cache=True)
def narrow(values, token):
    """float32 values rounded once into ``token``'s integer-view half type."""
    out = np.empty(values.size, token.dtype)
    for i in range(values.size):
        store(out, i, values[i])
    return out
