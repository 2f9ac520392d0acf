"""Hypothesis strategies for optimizer cases. Everything is drawn here; nothing uses torch's RNG.

Values are drawn with ``hypothesis.extra.numpy.arrays`` in the dtype's numpy counterpart and
turned into tensors with ``torch.from_numpy`` (via ``Case``). bfloat16 has no numpy dtype: its
values are float32 draws rounded to nearest bfloat16 (so shrinking still works on floats).

Magnitudes are 0 or within ``[TINY, HUGE]`` per dtype: ``HUGE = sqrt(max)/16`` so that squares
(and sums of a few squares) cannot overflow, ``TINY = 4*sqrt(smallest normal)`` so that squares
stay normal. Subnormal inputs are a separate opt-in (``subnormals=True``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from conformance.core.case import DTYPES, Case, Objective, P, Purpose, Sparse, real_dtype

_NUMPY = {torch.float16: np.float16, torch.float32: np.float32, torch.float64: np.float64}
_WIDTH = {torch.float16: 16, torch.bfloat16: 32, torch.float32: 32, torch.float64: 64}


def magnitude_bounds(dtype: torch.dtype) -> tuple[float, float]:
    """(TINY, HUGE), powers of two so that every float width represents them exactly."""
    info = torch.finfo(real_dtype(dtype))
    tiny = 2.0 ** math.ceil(math.log2(4 * math.sqrt(info.tiny)))
    return tiny, 2.0 ** math.floor(math.log2(math.sqrt(info.max) / 16))


def _representable(x: float, dtype: torch.dtype) -> float:
    return float(torch.tensor(x, dtype=torch.float64).to(dtype).double())


# Strategies are built once per argument tuple: building and validating them anew for every
# element drawn was most of a check's run time (profiled: 20 of 33 s of the torch check).
@functools.cache
def scalars(dtype: torch.dtype, *, lo=None, hi=None, nonneg=False, subnormals=False):
    """One value of ``dtype`` (as a float): 0 or a magnitude within ``[lo, hi]``."""
    dtype = real_dtype(dtype)
    tiny, huge = magnitude_bounds(dtype)
    lo, hi = lo or tiny, hi or huge
    width = _WIDTH[dtype]
    options = [st.just(0.0), st.floats(lo, hi, width=width)]
    if subnormals:
        sub_max = torch.finfo(dtype).tiny
        options.append(st.floats(0.0, sub_max, width=width, allow_subnormal=True, exclude_max=True))
    magnitude = st.one_of(options)
    if not nonneg:
        signs = st.sampled_from([1.0, -1.0])
        magnitude = st.tuples(magnitude, signs).map(lambda pair: pair[0] * pair[1])
    if dtype == torch.bfloat16:  # float32 draws rounded to nearest bfloat16
        return magnitude.map(functools.partial(_representable, dtype=dtype))
    return magnitude  # st.floats of the dtype's width: representable as drawn


@functools.cache
def arrays(dtype: torch.dtype, shape: tuple, **kw) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of ``dtype`` values (complex: a trailing axis of 2 for ``view_as_real``).
    A vector-sized array (more than ``MOTIF`` elements) repeats a drawn motif of ``MOTIF``
    elements: every lane of a SIMD body and of its tail holds a drawn value, at the cost of
    ``MOTIF`` draws instead of hundreds (which took most of the ``torch`` rows' time)."""
    if dtype.is_complex:
        shape = (*shape, 2)
    real = real_dtype(dtype)
    numpy_dtype = _NUMPY.get(real, np.float32)  # bfloat16 values are exact in float32
    size = math.prod(shape)
    drawn = (MOTIF,) if size > MOTIF else shape
    values = hnp.arrays(numpy_dtype, drawn, elements=scalars(real, **kw))
    if size > MOTIF:  # a partial, not a lambda: Hypothesis then prints the array it made
        return values.map(functools.partial(_tiled, size=size, shape=shape))
    return values.map(lambda a: a.astype(np.float64))


def _tiled(motif: np.ndarray, *, size: int, shape: tuple) -> np.ndarray:
    return np.resize(motif, size).reshape(shape).astype(np.float64)


# A prime, so that a repeated motif puts different values in the same lane of consecutive
# vectors of 8, 16, 32 or 64 lanes
MOTIF = 17


def shapes(
    max_dims: int = 4, max_side: int = 3, min_dims: int = 0, min_side: int = 0
) -> st.SearchStrategy[tuple]:
    """``min_dims``-d (0-d by default) to ``max_dims``-d shapes, empty ones included unless
    ``min_side`` > 0."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


# Lengths that leave a SIMD kernel's vector body for its tail and back: just below, at and just
# above multiples of 8, 16, 32 and 64 lanes (a float16 AVX-512 vector holds 32, a float64 one 8),
# up to a few hundred elements. Ascending, so a failure shrinks to the shortest that shows it.
VECTOR_LENGTHS = tuple(
    sorted(
        {
            lanes * k + d
            for lanes in (8, 16, 32, 64)
            for k in range(1, 300 // lanes + 1)
            for d in (-1, 0, 1)
            if 7 <= lanes * k + d <= 300
        }
    )
)


def vector_shapes(entry) -> st.SearchStrategy[tuple] | None:
    """A vector-sized shape the entry takes: 1-d ``(L,)``, or ``(2, L)`` where params are
    2-d (Muon); None where the entry draws neither, or steps a closure over a quadratic (LBFGS:
    an L×L Hessian per param would dominate the run)."""
    fewest, most = entry.param_dims
    if entry.objective or most < 1 or fewest > 2:
        return None
    lengths = st.sampled_from(VECTOR_LENGTHS)
    return lengths.map(lambda n: (n,)) if fewest <= 1 else lengths.map(lambda n: (2, n))


LAYOUTS = ("contiguous", "strided", "transposed")  # the run's choice: --conformance-layouts


@st.composite
def params(draw, dtype, shape, *, layouts=True, **kw) -> P:
    options = ["contiguous"]
    if layouts and len(shape) >= 1 and "strided" in LAYOUTS:
        options.append("strided")
    if layouts and len(shape) >= 2 and "transposed" in LAYOUTS:
        options.append("transposed")
    layout = draw(st.sampled_from(options))
    return P(draw(arrays(dtype, shape, **kw)), layout)


@st.composite
def starting_state(
    draw, entry, group: dict, dtype, shape, *, eager=False, nonneg=False, **kw
) -> dict:
    """A valid state for one param in torch's layout, from ``entry.state_fields(group)``.

    Kinds: ``any``; ``nonneg``; ``("ge", other)`` >= another field (amsgrad's max);
    ``("ge_square", other)`` >= other**2 (centered RMSprop: square_avg >= grad_avg**2);
    ``step``: a float step count >= 1 (``int_step``: a Python int, SparseAdam's);
    ``("scalar", lo, hi)``: a 0-d state torch keeps in its
    float32 scalar dtype (NAdam's mu_product, ASGD's eta and mu), a float in [lo, hi]. Lazy
    optimizers may also start fresh (empty state).
    """
    fields = entry.state_fields(group)
    if not fields or (not eager and draw(st.booleans())):
        return {}
    state: dict = {}
    real = real_dtype(dtype)
    for key, kind in fields.items():  # dependencies come first in state_fields
        if kind in ("step", "int_step"):
            step = draw(st.one_of(st.integers(1, 10), st.integers(1, 100_000)))
            state[key] = step if kind == "int_step" else float(step)
            continue
        if isinstance(kind, tuple) and kind[0] == "scalar":  # a 0-d state in torch's float32
            state[key] = float(np.float32(draw(st.floats(kind[1], kind[2]))))
            continue
        key_shape = entry.state_shape(key, shape)
        if key_shape is None:  # torch keeps no such key for a param of this shape
            continue
        a = draw(arrays(dtype, key_shape, nonneg=nonneg or kind != "any", **kw))
        if isinstance(kind, tuple):
            other = state[kind[1]]
            # computed in the dtype, so the inequality holds after rounding
            t, o = torch.from_numpy(a).to(real), torch.from_numpy(other).to(real)
            # ge_square: >= 2*grad_avg**2 keeps sq - grad_avg**2 well conditioned (x2 is exact)
            floor = 2 * o * o if kind[0] == "ge_square" else o
            a = torch.maximum(t, floor).double().numpy()
        state[key] = a
    return state


@st.composite
def sparse_grads(draw, dtype, shape, sparse_dims: int, *, unique=False, **kw) -> Sparse:
    """A COO gradient for a param of ``shape`` with its first ``sparse_dims`` dims sparse: up
    to 4 entries named, repeats allowed unless ``unique`` (then its dense form is exact: no sum
    rounds), built coalesced or not."""
    sizes = shape[:sparse_dims]
    entries = []
    if all(sizes):
        entry = st.tuples(*(st.integers(0, n - 1) for n in sizes))
        entries = draw(st.lists(entry, max_size=4, unique=unique), label="named entries")
    indices = np.array(entries, dtype=np.int64).reshape(len(entries), sparse_dims).T
    values = draw(arrays(dtype, (len(entries), *shape[sparse_dims:]), **kw))
    return Sparse(indices, values, draw(st.booleans(), label="coalesced"))


@st.composite
def cases(
    draw,
    entry,
    dtype_name: str,
    device: str,
    *,
    steps=(1, 4),
    max_params: int = 3,
    max_groups: int = 2,
    max_side: int = 3,
    purpose: Purpose | str = Purpose.TORCH,
    subnormals: bool = False,
    layouts: bool = True,
    sparse: bool = True,
    tensor_lr: bool = True,
    tensor_betas: bool = False,
) -> Case:
    """A whole case for ``entry``: params (several, several groups), hyperparameters from
    ``entry.hyperparameters``, an arbitrary valid starting state and a gradient sequence with
    some gradients ``None`` (and sparse ones where ``entry.sparse_grads`` allows, unless
    ``sparse=False``; SparseAdam's are sparse whatever it says). ``tensor_lr=False``: never a
    tensor lr (a subject that lacks it). ``tensor_betas=True``: betas as 0-d tensors, one case in
    two, where ``entry.tensor_betas`` (the torch and spec checks ask; a subject that lacks
    them does not)."""
    dtype, purpose = DTYPES[dtype_name], Purpose(purpose)
    # vs spec: one sign for params, gradients and momentum-like state, so that no sum in the
    # update cancels (see registry: the one-step bounds hold where the update is well conditioned)
    nonneg = purpose.against_spec
    # "bounded": signs as drawn, magnitudes as vs spec (Muon's scale invariance: room to scale)
    bounded = purpose.bounded
    # vs spec: magnitudes within [2**-20, 2**20] (and the dtype's own bounds). specs' step_exact
    # evaluates at 50 digits, which is not exact when inputs span more than ~20 orders of
    # magnitude (seen: m = 7.5e50, g = 1, beta1 = 0 gave "exact" param 0 instead of -1.414).
    if bounded:
        tiny, huge = magnitude_bounds(dtype)
        kw_range = {"lo": max(tiny, 2.0**-20), "hi": min(huge, 2.0**20)}
    else:
        kw_range = {}
    n = draw(st.integers(1, max_params), label="n_params")
    # an optimizer that takes only sparse gradients gets params they can name (>= 1 dim; not
    # empty, see the sparse draw below)
    fewest, most = entry.param_dims
    least = 1 if entry.sparse_grads == "always" else 0
    # empty params (a zero side) in one case in four: allowed in every case, about half of all
    # small shapes have a zero side, and an example whose params are all empty judges nothing
    may_be_empty = entry.sparse_grads != "always" and entry.empty_params
    side = 0 if may_be_empty and draw(st.integers(0, 3), label="empty params allowed") == 3 else 1
    shapes_ = [
        draw(shapes(max_dims=most, max_side=max_side, min_dims=max(least, fewest), min_side=side))
        for _ in range(n)
    ]
    # one case in five has one vector-sized param (SIMD bodies and ragged tails); the others
    # stay small, so that the exact oracle and the run time stay bounded
    vector = vector_shapes(entry)
    if vector is not None and draw(st.integers(0, 4), label="vector-sized param") == 4:
        shapes_[draw(st.integers(0, n - 1), label="which param")] = draw(vector, label="length")
    ps = [
        draw(params(dtype, s, layouts=layouts, subnormals=subnormals, nonneg=nonneg, **kw_range))
        for s in shapes_
    ]
    n_groups = draw(st.integers(1, min(n, max_groups, entry.max_groups)))
    # group k gets a contiguous run of param indices; every group non-empty
    cuts = []
    if n_groups > 1:
        cut_points = st.sets(st.integers(1, n - 1), min_size=n_groups - 1, max_size=n_groups - 1)
        cuts = sorted(draw(cut_points))
    bounds = [0, *cuts, n]
    groups = []
    for k in range(n_groups):
        hyper = draw(entry.hyperparameters(dtype, purpose), label=f"group {k}")
        groups.append({**hyper, "params": list(range(bounds[k], bounds[k + 1]))})
    group_of = {i: g for g in groups for i in g["params"]}
    if entry.elementwise:
        ps = [
            draw(visible_steps(p, dtype, group_of[i]["lr"], subnormals, nonneg, kw_range))
            for i, p in enumerate(ps)
        ]
    state = {}
    for i, s in enumerate(shapes_):
        st_i = draw(
            starting_state(
                entry,
                group_of[i],
                dtype,
                s,
                eager=entry.eager_state,
                subnormals=subnormals,
                nonneg=nonneg,
                **kw_range,
            )
        )
        if st_i:
            state[i] = st_i
    n_steps = draw(st.integers(*steps), label="steps")
    if entry.objective:  # the closure computes the gradients
        grads = [[None] * n for _ in range(n_steps)]
        objective = draw(objectives(dtype, shapes_), label="objective")
        return Case(dtype_name, device, ps, groups, state, grads, None, None, False, objective)
    values = {"subnormals": subnormals, "nonneg": nonneg, **kw_range}
    # sparse: a param's gradients are all sparse or all dense (an nn.Embedding(sparse=True) is
    # one or the other); where torch refuses sparse gradients for the group's flags, only the
    # torch check (error parity) draws them. Vs spec, indices are unique: the exact gradient.
    # with one number of sparse dims (SGD's sparse momentum buffer keeps the first one's). Not
    # for empty params: torch 2.13 segfaults adding a sparse tensor into some empty tensors
    # (docs/torch-findings.md#finding-14), which would take the whole test process down with it.
    sparse_dims = [
        draw(st.integers(1, len(s)), label=f"sparse dims {i}")
        if (sparse or entry.sparse_grads == "always")
        and len(s) >= 1
        and math.prod(s) > 0
        and not dtype.is_complex
        and (purpose is Purpose.TORCH or entry.sparse_accepted(group_of[i], dtype))
        and (
            entry.sparse_grads == "always"
            # one in two, drawn as an integer: booleans came out sparse in 4% of cases
            or (entry.sparse_grads == "maybe" and draw(st.integers(0, 3), label=f"sparse {i}") > 1)
        )
        else 0
        for i, s in enumerate(shapes_)
    ]
    gradient = [
        sparse_grads(dtype, s, n, unique=purpose.against_spec, **values)
        if n
        else arrays(dtype, s, **values)
        for s, n in zip(shapes_, sparse_dims, strict=True)
    ]
    grads = [
        draw(_step_grads(gradient, every_step_judged=purpose.against_spec)) for _ in range(n_steps)
    ]
    foreach = draw(st.sampled_from([None, False, True]), label="foreach")
    # f32/f64: torch's foreach and for-loop paths are bitwise equal (TORCH_NOTES), so impl's path
    # is checked against either. f16/bf16: torch's foreach path rounds differently from its
    # for-loop path (1 ULP seen), so each impl path is checked against the same torch path.
    # complex with weight decay: torch's foreach path applies it after view_as_real, the for-loop
    # path before (complex arithmetic, 2 ULP seen), so complex is compared path for path too.
    # entry.paths_differ: torch's paths compute differently in every dtype (NAdam, RAdam, ASGD).
    half = real_dtype(dtype) in (torch.float16, torch.bfloat16)
    if entry.paths_differ or half or dtype.is_complex:
        torch_foreach = foreach
    else:
        torch_foreach = draw(st.sampled_from([None, True]), label="torch_foreach")
    # a tensor lr only where torch is the oracle: it changes values (a float32 lr), and torch
    # rejects it on some foreach paths, which the torch check turns into error parity
    tensor_lr = tensor_lr and purpose is Purpose.TORCH and draw(st.booleans(), label="tensor_lr")
    case = Case(dtype_name, device, ps, groups, state, grads, foreach, torch_foreach, tensor_lr)
    # torch's plain foreach path refuses tensor betas; its for-loop path casts them into the
    # param's dtype, so they are drawn as values every dtype holds (8 significant bits)
    if (
        tensor_betas
        and entry.tensor_betas
        and True not in (foreach, torch_foreach)
        and draw(st.booleans(), label="tensor_betas")
    ):
        held = [
            {**g, "betas": tuple(map(_eight_bits, g["betas"]))} if "betas" in g else g
            for g in case.groups
        ]
        case = case.replace(groups=held, tensor_betas=True)
    if entry.grad_scaling and purpose.against_spec and draw(st.integers(0, 2), label="amp") == 2:
        case = draw(grad_scaled(case, **kw_range), label="GradScaler")
    return case


@st.composite
def _step_grads(draw, gradient: list, *, every_step_judged: bool) -> list:
    """One step's gradients, one per param: None one time in five (the param has no gradient
    and must not move). ``every_step_judged``: at least one param has a gradient, so that no
    example of a check against the spec judges nothing but that nothing moved (the last param
    gets one where all before it have none)."""
    step = []
    for i, g in enumerate(gradient):
        last_chance = every_step_judged and i == len(gradient) - 1 and all(x is None for x in step)
        none = not last_chance and draw(st.integers(0, 4), label=f"grad {i} is None") == 0
        step.append(None if none else draw(g))
    return step


def _eight_bits(beta: float) -> float:
    """``beta`` rounded toward zero to 8 significant bits (exact in bfloat16, float16 and up;
    toward zero keeps a rate below 1 below 1)."""
    if beta == 0:
        return 0.0
    mantissa, exponent = math.frexp(beta)
    return math.ldexp(math.floor(mantissa * 256) / 256, exponent)


@st.composite
def grad_scaled(draw, case: Case, *, lo: float, hi: float) -> Case:
    """``case`` under GradScaler: a power-of-two scale 2**k (k in [-8, 16], GradScaler's range of
    scales, narrowed so that every scaled gradient g·2**k of magnitude in ``[lo, hi]`` stays a
    normal number of the dtype: the scaling is then exact and the unscaled math is the case's),
    the gradients scaled by it, and ``found_inf`` per step (1.0 in one step of four)."""
    info = torch.finfo(real_dtype(case.torch_dtype))
    k_hi = min(16, math.floor(math.log2(info.max)) - math.ceil(math.log2(hi)))
    k_lo = max(-8, math.ceil(math.log2(info.tiny)) - math.floor(math.log2(lo)))
    scale = 2.0 ** draw(st.integers(k_lo, k_hi), label="log2 grad_scale")
    found_inf = tuple(
        float(draw(st.integers(0, 3), label=f"found_inf {t}") == 3) for t in range(case.steps)
    )

    def scaled(g):
        if isinstance(g, Sparse):
            return Sparse(g.indices, np.asarray(g.values * scale), g.coalesced)
        return None if g is None else np.asarray(g * scale)  # 0-d arrays stay arrays

    grads = [[scaled(g) for g in step] for step in case.grads]
    return case.replace(grads=grads, grad_scale=scale, found_inf=found_inf)


@st.composite
def visible_steps(draw, p: P, dtype, lr: float, subnormals: bool, nonneg: bool, kw_range) -> P:
    """A param whose step shows (one case in four; in float16 and bfloat16 one in two, else ``p``
    as drawn): an error in the update vanishes in p's rounding where |step| << |p|, and with 8
    or 11 significant bits most drawn params hide a whole step of lr = 1e-3. Every element 0;
    or magnitudes within 2**4 of lr (the scale of an Adam-like step, lr·m/sqrt(v)); or, where
    the purpose draws subnormals, subnormal magnitudes. Within the purpose's domain, signs as it
    draws."""
    real = real_dtype(dtype)
    odds = 2 if real in (torch.float16, torch.bfloat16) else 4
    if draw(st.integers(1, odds), label="visible step") > 1 or p.values.size == 0 or not lr > 0:
        return p
    mode = draw(st.sampled_from(("zeros", "near lr", "subnormal")), label="visible how")
    if mode == "zeros":
        return P(np.zeros_like(p.values), p.layout)
    shape = p.values.shape[:-1] if dtype.is_complex else p.values.shape
    if mode == "subnormal" and subnormals:
        info = torch.finfo(real)
        least = info.smallest_normal * info.eps  # the smallest subnormal
        sub = arrays(dtype, shape, lo=least, hi=info.smallest_normal / 2, nonneg=nonneg)
        return P(draw(sub), p.layout)
    # powers of two: representable in every dtype, and few distinct (cached) strategies
    tiny, huge = magnitude_bounds(real)
    lo = max(kw_range.get("lo", tiny), 2.0 ** math.floor(math.log2(lr / 16)))
    hi = min(kw_range.get("hi", huge), 2.0 ** math.ceil(math.log2(lr * 16)))
    if lo > hi:
        return p
    return P(draw(arrays(dtype, shape, lo=lo, hi=hi, nonneg=nonneg)), p.layout)


@st.composite
def objectives(draw, dtype: torch.dtype, shapes_: list[tuple]) -> Objective:
    """A strictly convex quadratic per param: a symmetric, strictly diagonally dominant Hessian
    (off-diagonal entries 0 or of magnitude 2**-8 to 1, each diagonal entry 1/2 to 4 above its
    row's absolute sum; rounding it into the dtype moves it by far less than 1/2) and an offset
    of magnitude up to 2, every entry exact in ``dtype``."""
    hessians, offsets = [], []
    for shape in shapes_:
        n = math.prod(shape)
        off = np.triu(draw(arrays(dtype, (n, n), lo=2.0**-8, hi=1.0)), 1)
        off = off + off.T
        margin = draw(
            arrays(dtype, (n,), lo=0.5, hi=4.0, nonneg=True).filter(lambda m: (m > 0).all())
        )
        diagonal = torch.from_numpy(np.abs(off).sum(axis=1) + margin).to(dtype).double().numpy()
        hessians.append(off + np.diag(diagonal))
        offsets.append(draw(arrays(dtype, (n,), lo=2.0**-8, hi=2.0)))
    return Objective(hessians, offsets)


@st.composite
def quadratic_quartic(draw, n_max: int = 4):
    """A smooth loss f(x) = 1/2 x'Ax + b'x + c*sum(x**4) (A = M'M + lam*I), with x0.

    Returned as plain float64 data: (x0, A, b, c). Gradients come from autograd on it.
    """
    n = draw(st.integers(1, n_max))
    bounded = st.floats(-2.0, 2.0, width=64)
    m = draw(hnp.arrays(np.float64, (n, n), elements=bounded))
    lam = draw(st.floats(0.0, 1.0))
    a = m.T @ m + lam * np.eye(n)
    b = draw(hnp.arrays(np.float64, (n,), elements=bounded))
    c = draw(st.floats(0.0, 0.1))
    x0 = draw(hnp.arrays(np.float64, (n,), elements=bounded))
    return x0, a, b, c
