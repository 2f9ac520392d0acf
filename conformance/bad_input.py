"""Bad input, drawn like good input: hyperparameters outside the domain and non-finite gradients.

The ``errors`` check (``checks.errors_like_reference``) runs a subject and torch.optim's class on
the same bad case: under the ``bitwise`` contract the subject must raise like the reference
(same exception class, same message) or, where the reference does not raise, propagate the
non-finite values like it; under ``ulp`` the spec judges (docs/harness.md#errors-ulp).

Two kinds of case, each a valid ``strategies.cases`` draw with one thing broken:

- **a bad hyperparameter**: one key of one group (from ``entry.hyperparameters(dtype,
  "invariant")``) replaced by a generic bad value: negative, NaN, infinite, 1 or above (for decay
  rates), a huge lr, a wrong type (a string, ``None``, a bare float for ``betas``), or a tensor
  (of the wrong size, 1-d of one element, or 0-d). ``betas`` gets one element replaced, or the
  whole tuple. torch refuses some of these at construction and some only at ``step()``; both
  count. Tensors are kept in the case as their source text (``TENSORS``), so the case stays
  plain data and its ``repr`` replays it; ``materialize`` turns them into fresh tensors where the
  optimizer is built.
- **non-finite gradients**: NaN, +Inf or -Inf written into drawn elements of drawn gradients
  (a sparse gradient's stored values).

Not drawn: a gradient whose shape, dtype or device differs from its param. torch's ``p.grad``
setter refuses those itself (``RuntimeError: assigned grad has data of a different size`` /
``type`` / ``device``) before any optimizer sees them, so no optimizer can raise or propagate
differently on them.

Everything is drawn by Hypothesis; nothing uses torch's RNG.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from hypothesis import strategies as st

from conformance import strategies
from conformance.core.case import Case, Sparse

# tensor-valued hyperparameters, as the source text a case holds and the tensor it stands for
TENSORS = {
    "torch.tensor([0.1, 0.2])": lambda: torch.tensor([0.1, 0.2]),  # the wrong size
    "torch.tensor([0.1])": lambda: torch.tensor([0.1]),  # 1-d, one element (torch squeezes lr)
    "torch.tensor(-1.0)": lambda: torch.tensor(-1.0),  # 0-d, out of the domain
}

# generic bad values, tried on every key: out of every domain somewhere, or of the wrong type
BAD_VALUES = (-1.0, math.nan, math.inf, -math.inf, 1.0, 1.5, 1e300, "0.1", None, *TENSORS)
# betas: one element replaced by one of these, or the whole tuple by a BAD_VALUES entry
BAD_BETA = (-0.1, -1.0, math.nan, math.inf, 1.0, 1.5, "0.9", None, *TENSORS)


# budgets of work (LBFGS): a bad value there is tried, but not one that means "unbounded": with
# max_eval = 1e300 the strong-Wolfe search gets 1e300 evaluations, and where a NaN keeps its
# bracket test from ever succeeding, torch's loop and impl's (the same loop) run for as long
# as that (seen under the thorough profile: 6.6 million line-search iterations in 30 minutes)
BUDGETS = frozenset({"max_iter", "max_eval"})
UNBOUNDED = (math.inf, 1e300)


def _numbers(values) -> tuple:
    return tuple(v for v in values if isinstance(v, float))


NON_FINITE = (math.nan, math.inf, -math.inf)


_VALIDATES_TYPE: dict = {}


def _validates_type(cls, key: str) -> bool:
    """Whether torch's constructor refuses a wrong type (a string) for ``key``."""
    if (cls, key) not in _VALIDATES_TYPE:
        try:
            cls([torch.zeros(1)], **{key: "0.1"})
            _VALIDATES_TYPE[cls, key] = False
        except (TypeError, ValueError):
            _VALIDATES_TYPE[cls, key] = True
    return _VALIDATES_TYPE[cls, key]


def _same_kind(value, valid) -> bool:
    """A float where the valid value is a number (not a flag), a tuple of floats where it is one."""
    if isinstance(valid, tuple):
        return isinstance(value, tuple) and all(_same_kind(v, w) for v, w in zip(value, valid))
    return (
        isinstance(value, float) and isinstance(valid, int | float) and not isinstance(valid, bool)
    )


class Source:
    """A value shown as source text in the plain-torch reproduction (a tensor hyperparameter)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _map(value, fn):
    if isinstance(value, tuple | list):
        return type(value)(_map(v, fn) for v in value)
    if isinstance(value, str) and value in TENSORS:
        return fn(value)
    return value


def materialize(hyper: dict) -> dict:
    """Hyperparameters with fresh tensors for those held as text (for building an optimizer;
    call once per optimizer: no tensor is shared between two runs)."""
    return {k: _map(v, lambda s: TENSORS[s]()) for k, v in hyper.items()}


def materialize_case(case: Case) -> Case:
    return case.replace(groups=[materialize(g) for g in case.groups])


def as_source(hyper: dict) -> dict:
    """Hyperparameters with tensors as ``torch.tensor(...)`` source text (for the plain-torch
    reproduction, whose ``groups={...!r}`` and kwargs then build the same tensors)."""
    return {k: _map(v, Source) for k, v in hyper.items()}


def case_as_source(case: Case) -> Case:
    return case.replace(groups=[as_source(g) for g in case.groups])


def _state_layout(entry, group) -> tuple | None:
    try:
        return tuple(entry.state_fields(group))
    except Exception:  # a bad value the layout cannot even read (e.g. momentum > "0.1")
        return None


@st.composite
def bad_hyperparameter(
    draw, entry, dtype_name: str, device: str, steps=(1, 2), wrong_types=True, keys=None
) -> tuple:
    """``(case, defaults)``: a valid case with one hyperparameter of one group replaced by a bad
    value, either in the group itself (``defaults`` empty: torch validates only its constructor
    arguments, so a bad group value meets the step) or taken out of the group and passed to the
    constructor (``defaults == {key: value}``: torch's constructor validation).
    ``wrong_types=False``: only float values, in the right place (no strings, None or tensors,
    and ``betas`` stays a tuple). ``keys``: break only these hyperparameters."""
    bad_values = BAD_VALUES if wrong_types else _numbers(BAD_VALUES)
    bad_beta = BAD_BETA if wrong_types else _numbers(BAD_BETA)
    case = draw(
        strategies.cases(entry, dtype_name, device, steps=steps, max_params=2, purpose="invariant"),
        label="valid case",
    )
    k = draw(st.integers(0, len(case.groups) - 1), label="group")
    group = dict(case.groups[k])
    # wrong types only where torch's constructor checks the type: elsewhere (dampening, the
    # boolean flags) torch has no contract but whatever error its arithmetic happens to raise
    breakable = sorted(
        x
        for x in group
        if x != "params"
        and (keys is None or x in keys)
        and (not isinstance(group[x], bool) or _validates_type(entry.reference, x))
    )
    key = draw(st.sampled_from(breakable), label="key")
    typed = wrong_types and _validates_type(entry.reference, key)
    if key == "betas" and (not typed or draw(st.booleans(), label="one beta")):
        i = draw(st.integers(0, len(group["betas"]) - 1), label="beta index")
        betas = list(group["betas"])
        betas[i] = draw(
            st.sampled_from(bad_beta if typed else _numbers(bad_beta)), label="bad beta"
        )
        value = tuple(betas)
    else:
        values = bad_values if typed else _numbers(bad_values)
        if key in BUDGETS:
            values = tuple(v for v in values if v not in UNBOUNDED)
        value = draw(st.sampled_from(values), label="bad value")
    bad = {**group, key: value}
    # a wrong type goes through the constructor, the one place torch validates; set directly in
    # a param group it meets whatever Python error the step's arithmetic happens to raise first,
    # which is no contract (values out of the domain are drawn in both places)
    as_default = not _same_kind(value, group[key]) or draw(
        st.booleans(), label="as constructor argument"
    )
    defaults = {key: value} if as_default else {}
    in_case = {x: v for x, v in bad.items() if x != key} if as_default else bad
    groups = [*case.groups[:k], in_case, *case.groups[k + 1 :]]
    # the starting state was drawn for the valid group: keep it only where the bad value leaves
    # its layout as it was (a state the hyperparameters contradict is not what is tested here)
    state = case.state
    if _state_layout(entry, bad) != _state_layout(entry, group):
        state = {i: s for i, s in state.items() if i not in bad["params"]}
    # torch's path for the reference is the subject's own, so that only the bad value differs;
    # a bad lr is passed as drawn, never wrapped into a tensor by the case
    bad_case = case.replace(
        groups=groups,
        state=state,
        torch_foreach=case.foreach,
        tensor_lr=case.tensor_lr and key != "lr",
    )
    return bad_case, defaults


@st.composite
def nonfinite_grads(
    draw, entry, dtype_name: str, device: str, steps=(1, 3), purpose="invariant"
) -> tuple:
    """A valid case with NaN/±Inf written into drawn elements of drawn gradients (as
    ``(case, {})``: no constructor arguments). ``purpose``: the domain of the valid case
    (``spec_trajectory`` where the ``ulp`` contract judges its finite elements within the spec's
    derived bound, which holds on that domain only: ``spec_purpose``)."""
    case = draw(
        strategies.cases(entry, dtype_name, device, steps=steps, max_params=2, purpose=purpose),
        label="valid case",
    )
    where = [
        (t, i)
        for t, gs in enumerate(case.grads)
        for i, g in enumerate(gs)
        if g is not None and stored_values(g).size
    ]
    if not where:  # every gradient None or empty: nothing to poison, a valid case as it is
        return case.replace(torch_foreach=case.foreach), {}
    grads = [[_copy(g) for g in gs] for gs in case.grads]
    for t, i in draw(
        st.lists(st.sampled_from(where), min_size=1, max_size=3, unique=True), label="poisoned"
    ):
        flat = stored_values(grads[t][i]).reshape(-1)  # a view: writes land in grads[t][i]
        n = draw(st.integers(1, min(3, flat.size)), label="count")
        for j in draw(st.lists(st.integers(0, flat.size - 1), min_size=n, max_size=n)):
            flat[j] = draw(st.sampled_from(NON_FINITE), label="value")
    return case.replace(grads=grads, torch_foreach=case.foreach), {}


def stored_values(g) -> np.ndarray:
    """A gradient's stored values (a sparse one's, not its zeros)."""
    return g.values if isinstance(g, Sparse) else np.asarray(g)


def _copy(g):
    if isinstance(g, Sparse):
        return dataclasses.replace(g, values=np.array(g.values, copy=True))
    return None if g is None else np.array(g, copy=True)


def spec_purpose(entry, contract: str) -> str:
    """The domain non-finite gradients are written into: under the ``ulp`` contract, for an
    entry with an elementwise spec, the one where the derived one-step bound holds at every step
    of a trajectory (one sign, no weight decay: ``Purpose.SPEC_TRAJECTORY``), so that the
    elements the poison does not reach are judged within it; elsewhere torch's whole domain."""
    if contract == "ulp" and entry.elementwise and entry.spec_bound is not None:
        return "spec_trajectory"
    return "invariant"


def bad_cases(
    entry, dtype_name: str, device: str, wrong_types=True, contract="bitwise"
) -> st.SearchStrategy[tuple]:
    """``(case, defaults)`` of either kind, about evenly: the arguments of
    ``checks.errors_like_reference(subject, case, defaults)``. ``contract``: the subject's
    (``spec_purpose``)."""
    return st.one_of(
        bad_hyperparameter(entry, dtype_name, device, wrong_types=wrong_types),
        nonfinite_grads(entry, dtype_name, device, purpose=spec_purpose(entry, contract)),
    )
