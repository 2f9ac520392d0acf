"""What the harness checks: a *subject*, an optimizer class that claims a registry entry's spec.

A subject is a class (or ``"package.module:Class"``), fixed constructor kwargs (``fused=True``),
the registry entry it claims, and a contract:

- ``bitwise``: params and every state tensor equal, bit for bit, to torch.optim on a named
  reference path (``matching``: the path the subject itself runs, ``for-loop`` or ``foreach``).
  This is impl's promise on CPU.
- ``ulp``: within the entry's derived ULP bound of the exact spec; the distance to torch.optim's
  for-loop path is *reported*, not judged (two correct paths may round differently).

Every check receives a subject, so impl, torch.optim's own foreach/fused paths and a user's class
go through the same checks and the same report.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property

import torch

from conformance import registry
from conformance.core import gloo
from conformance.core.case import DTYPES, Sparse
from impl._fused import FUSED_CLASSES

CONTRACTS = ("bitwise", "ulp")
REFERENCES = ("matching", "for-loop", "foreach")
# constructor flags that choose the execution path: a subject that fixes one runs that path
PATH_FLAGS = ("foreach", "fused")


class SubjectError(ValueError):
    """A subject that cannot be built: the message is one line that names the problem."""


@dataclass(frozen=True)
class Subject:
    cls: type
    entry: registry.Entry
    kwargs: Mapping = field(default_factory=dict)
    contract: str = "bitwise"
    reference: str = "matching"
    label: str = ""
    # capability (CAPABILITIES) -> why the subject lacks it, declared where the subject is defined
    # (a built-in suite): rows whose point it is are skips with the reason, not undeclared refusals
    lacks: Mapping = field(default_factory=dict)
    # capabilities the user declared lacking (--without, audit(without=...))
    without: frozenset = frozenset()
    # capability -> the subject's refusal, found by trying (``probed``) where nobody declared it
    found: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.contract not in CONTRACTS:
            raise SubjectError(f"unknown contract {self.contract!r}; expected one of {CONTRACTS}")
        if self.reference not in REFERENCES:
            raise SubjectError(
                f"unknown reference {self.reference!r}; expected one of {REFERENCES}"
            )
        if not self.label:
            object.__setattr__(self, "label", describe(self.cls, self.kwargs))
        object.__setattr__(self, "without", parse_without(self.without))
        parse_without(self.lacks)  # a suite's keys are capabilities too
        for capability, why in _every_row_needs(self.entry).items():
            if capability in self.lacks or capability in self.without:
                raise SubjectError(
                    f"{self.label} is declared without {capability} "
                    f"({CAPABILITIES[capability]}), but {why}: no row of it could run "
                    f"(drop --without {capability}, or claim another entry with --like)"
                )
        object.__setattr__(self, "entry", self._honoured(self.entry))

    def _honoured(self, entry: registry.Entry) -> registry.Entry:
        """The entry as this subject's cases are drawn: no sparse gradients and one param group
        where it lacks them (every draw, bad input's too, reads them from the entry)."""
        # torch's fused kernels refuse sparse gradients, so a fused path is drawn dense ones
        # (its refusal is pinned by tests/test_impl_fused.py)
        if entry.sparse_grads == "maybe" and (self.kwargs.get("fused") or "sparse" in self.lacking):
            entry = dataclasses.replace(entry, sparse_grads="never")
        if entry.max_groups > 1 and "groups" in self.lacking:
            entry = dataclasses.replace(entry, max_groups=1)
        if self.kwargs.get("fused"):  # torch's fused steps read GradScaler's attributes
            entry = dataclasses.replace(entry, grad_scaling=True)
        return entry

    # -- capabilities ------------------------------------------------------------------------
    @property
    def lacking(self) -> frozenset:
        """Every capability the subject lacks: declared (suite, user) or found by trying."""
        return frozenset(self.lacks) | self.without | frozenset(self.found)

    def takes(self, capability: str) -> bool:
        return capability not in self.lacking

    def declared(self, capability: str) -> str | None:
        """Who declared the lack of ``capability``, and why; None where nobody did."""
        if capability in self.lacks:
            return f"declared by the suite: {self.lacks[capability]}"
        if capability in self.without:
            return f"declared by the user (--without {capability})"
        return None

    def probed(self) -> Subject:
        """The subject with the capabilities it refuses, tried one by one, in ``found``: each
        that nobody declared, that the entry's draws use and that torch's class takes."""
        found = {
            capability: refusal
            for capability in CAPABILITIES
            if self.takes(capability)
            and _drawn(self.entry, capability)
            and (refusal := self._capability_refusal(capability))
        }
        return dataclasses.replace(self, found={**self.found, **found}) if found else self

    def _capability_refusal(self, capability: str) -> str | None:
        key = (self.cls, repr(sorted(self.kwargs.items())), self.entry.name, capability)
        if key not in _REFUSALS:
            _REFUSALS[key] = _probe_capability(self.cls, self.kwargs, self.entry, capability)
        return _REFUSALS[key]

    def lack_of_row(self, check: str, dtype: str, device: str, case=None) -> str | None:
        """Why the row does not run: a capability the subject lacks is its point (a check about
        it, a complex dtype, a fixed regression case that uses it). Declared: the declaration
        with the subject's own refusal quoted; found by trying: the refusal, which fails the run
        as an undeclared refusal does. A complex dtype nobody declared is ``unsupported``'s."""
        for capability in _points(check, dtype, case):
            if capability in self.lacks:  # the suite's reason quotes the refusal already
                return self.declared(capability)
            if capability in self.without:
                return f"{self.declared(capability)}; {self._quote(capability, dtype, device)}"
            if capability in self.found:
                return self.found[capability]
        return None

    def _quote(self, capability: str, dtype: str, device: str) -> str:
        """The subject's own refusal of ``capability`` (complex: of the row's dtype)."""
        if capability == "complex":
            refusal = self._probe(dtype, "cpu" if device == gloo.DEVICE else device)
        else:
            refusal = self._capability_refusal(capability)
        return refusal or f"the subject was not seen to refuse {CAPABILITIES[capability]}"

    @property
    def id(self) -> str:
        """Test-id prefix: empty for impl's own class under its own promise (the default run)."""
        return "" if self.is_impl_default else f"{self.label}-"

    @property
    def is_impl_default(self) -> bool:
        return (
            self.cls is self.entry.impl
            and not self.kwargs
            and self.contract == "bitwise"
            and self.reference == "matching"
        )

    @property
    def bitwise(self) -> bool:
        return self.contract == "bitwise"

    @property
    def own_flags(self) -> frozenset:
        """Param-group keys that are the subject's own choice, never compared with torch's."""
        return frozenset(self.kwargs) | {"foreach"}

    @cached_property
    def takes_foreach(self) -> bool:
        if any(k in self.kwargs for k in PATH_FLAGS):
            return False
        try:
            parameters = inspect.signature(self.cls).parameters
        except (TypeError, ValueError):
            return False
        return "foreach" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )

    def build(self, case, params, foreach=None) -> torch.optim.Optimizer:
        """The subject on ``params`` with the case's groups and starting state.

        The case's drawn path (``foreach``) applies only to a subject that takes it and has not
        fixed its path itself.
        """
        path = {"foreach": foreach} if self.takes_foreach else {}
        return case.build(self.cls, params, **path, **self.kwargs)

    def path(self, foreach) -> str:
        """The path the subject runs: its own flags first, then the case's draw (CPU default:
        the for-loop path)."""
        if self.kwargs.get("fused"):
            return "fused"
        if "foreach" in self.kwargs:
            foreach = self.kwargs["foreach"]
        return "foreach" if foreach else "for-loop"

    def reference_foreach(self, case) -> bool | None:
        """torch.optim's path for the ``torch`` check: as named, or as the case drew it."""
        if self.reference == "for-loop" or not self.bitwise:
            return False
        if self.reference == "foreach":
            return True
        return case.torch_foreach

    def unsupported(self, dtype: str, device: str) -> str | None:
        """Why the subject refuses ``dtype`` on ``device``, or None.

        A refusal of a dtype is one step on a tiny param that raises in that dtype while the same
        construction and step run in another dtype the entry takes. A subject that refuses every
        dtype refuses valid input, not a dtype: None, so that the checks run and fail on it with
        the full explanation. The gloo mesh's ranks are CPU processes: probed on the CPU."""
        device = "cpu" if device == gloo.DEVICE else device
        refusal = self._probe(dtype, device)
        if refusal is None:
            return None
        if any(self._probe(other, device) is None for other in self.entry.dtypes if other != dtype):
            return refusal
        return None

    def _probe(self, dtype: str, device: str) -> str | None:
        key = (self.cls, repr(sorted(self.kwargs.items())), dtype, device)
        if key not in _REFUSALS:
            _REFUSALS[key] = _probe(self.cls, self.kwargs, dtype, device, self.entry)
        return _REFUSALS[key]


_REFUSALS: dict = {}
# how a refusal's reason starts (of a dtype, or of a capability found by trying): a skip row
# with it ran no example, and the run fails unless the lack is declared (--dtypes, --without,
# a suite's ``lacks``) or refused by the registry
REFUSES = "the subject refuses"

# what a subject may lack: found by trying (one step that uses it raises where the plain step
# and torch's class run) or declared (--without, a suite's ``lacks``); docs/harness.md#refusals
CAPABILITIES = {
    "sparse": "sparse gradients",
    "complex": "complex params",
    "closure": "step(closure)",
    "groups": "a second param group",
    "tensor_lr": "a tensor lr",
    "tensor_betas": "tensor betas",
}
# the checks that exist to test one capability: a subject that lacks it skips their rows
POINT_OF_CHECK = {"sparse_rows": "sparse", "complex_as_real": "complex"}


def _every_row_needs(entry) -> dict[str, str]:
    """Capabilities without which no row of ``entry`` can run: declaring one is refused."""
    needs = {}
    if entry.sparse_grads == "always":
        needs["sparse"] = f"{entry.name} takes only sparse gradients"
    if entry.objective:
        needs["closure"] = f"{entry.name} steps only with a closure"
    return needs


def _drawn(entry, capability: str) -> bool:
    """Whether the entry's cases use ``capability`` where the subject does not rule it out, so
    that trying it says something (complex: the dtype probe's, ``unsupported``)."""
    return {
        "sparse": entry.sparse_grads == "maybe",
        "complex": False,
        "closure": not entry.objective,
        "groups": entry.max_groups > 1,
        "tensor_lr": True,
        "tensor_betas": entry.tensor_betas,
    }[capability]


def _points(check: str, dtype: str, case=None) -> list[str]:
    """The capabilities a row is about: its check's, a complex dtype, and those a fixed case
    (a regression row, which cannot be drawn again without them) uses."""
    points = [POINT_OF_CHECK[check]] if check in POINT_OF_CHECK else []
    if dtype in registry.COMPLEX_DTYPES:
        points.append("complex")
    if case is not None:
        if any(isinstance(g, Sparse) for grads in case.grads for g in grads):
            points.append("sparse")
        if len(case.groups) > 1:
            points.append("groups")
        if case.tensor_lr:
            points.append("tensor_lr")
        if case.tensor_betas:
            points.append("tensor_betas")
    return list(dict.fromkeys(points))


def _set_grads(params, sparse: bool) -> None:
    for p in params:
        grad = torch.ones_like(p)
        p.grad = grad.to_sparse() if sparse else grad


def _probe_closure(params, sparse: bool):
    _set_grads(params, sparse)
    return sum(p.sum() for p in params).detach()


def _step_once(
    cls,
    kwargs,
    dtype,
    device,
    entry,
    *,
    sparse=False,
    groups=1,
    tensor_lr=False,
    tensor_betas=False,
    closure=False,
) -> None:
    """One step on tiny params, one per param group, as a case would build them (a tensor lr
    in each group, as ``Case.param_groups`` sets it); raises what the subject raises. A param
    has the fewest dims the entry draws (at least 1: Muon's are 2-d); a closure optimizer
    steps with a closure."""
    shape = (2,) * max(1, entry.param_dims[0])
    params = [
        torch.zeros(shape, dtype=DTYPES[dtype], device=device, requires_grad=True)
        for _ in range(groups)
    ]
    param_groups = [{"params": [p]} for p in params]
    if tensor_lr:
        lr = cls([torch.zeros_like(params[0])], **kwargs).param_groups[0]["lr"]
        param_groups = [{**g, "lr": torch.tensor(lr, dtype=torch.float32)} for g in param_groups]
    if tensor_betas:  # as Case.param_groups sets them
        betas = cls([torch.zeros_like(params[0])], **kwargs).param_groups[0]["betas"]
        held = tuple(torch.tensor(float(b), dtype=torch.float64) for b in betas)
        param_groups = [{**g, "betas": held} for g in param_groups]
    opt = cls(param_groups, **kwargs)
    _set_grads(params, sparse)
    opt.step(
        functools.partial(_probe_closure, params, sparse) if closure or entry.objective else None
    )


def _probe(cls, kwargs: Mapping, dtype: str, device: str, entry) -> str | None:
    """None if one step with a dense gradient, or else with a sparse one (SparseAdam takes
    only those), runs; otherwise the dense step's error."""
    refusal = None
    for sparse in (False, True):
        try:
            _step_once(cls, kwargs, dtype, device, entry, sparse=sparse)
            return None
        except Exception as e:  # a subject may refuse anything; the report shows the reason
            refusal = refusal or f"{REFUSES} {dtype} on {device}: {type(e).__name__}: {e}"
    return refusal.splitlines()[0]


_TRIES = {
    "sparse": {"sparse": True},
    "closure": {"closure": True},
    "groups": {"groups": 2},
    "tensor_lr": {"tensor_lr": True},
    "tensor_betas": {"tensor_betas": True},
}


def _probe_capability(cls, kwargs: Mapping, entry, capability: str) -> str | None:
    """The subject's refusal of ``capability``: one step that uses it raises while the plain
    step runs (in the first dtype where it does, on the CPU) and torch's class takes it with
    the kwargs it knows (a capability torch refuses there, e.g. SGD's sparse gradients with
    nesterov, is not one the subject lacks). None otherwise; complex: the dtype probe's."""
    if capability not in _TRIES:
        return None
    dtype = next(
        (
            d
            for d in _PROBE_DTYPES
            if d in entry.dtypes and not _probe(cls, kwargs, d, "cpu", entry)
        ),
        None,
    )
    if dtype is None:  # no plain step runs: valid input is refused, and the checks say so
        return None
    tries = {"sparse": entry.sparse_grads == "always", **_TRIES[capability]}
    try:
        _step_once(cls, kwargs, dtype, "cpu", entry, **tries)
        return None
    except Exception as e:  # the refusal, quoted where the lack is reported
        refusal = f"{REFUSES} {CAPABILITIES[capability]}: {type(e).__name__}: {e}"
    try:
        _step_once(
            entry.reference, _known_kwargs(entry.reference, kwargs), dtype, "cpu", entry, **tries
        )
    except Exception:  # torch refuses it too: not a capability the subject lacks
        return None
    return refusal.splitlines()[0]


_PROBE_DTYPES = ("float32", "float64", "bfloat16", "float16")


def _known_kwargs(cls, kwargs: Mapping) -> dict:
    """The subject's fixed kwargs that ``cls`` takes (a subject may have flags of its own)."""
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return {}
    return {k: v for k, v in kwargs.items() if k in parameters}


def public_name(cls) -> str:
    """The shortest import path that reaches ``cls``: ``impl.Adam``, ``torch.optim.Adam``."""
    parts = cls.__module__.split(".")
    for n in range(1, len(parts) + 1):
        module = ".".join(parts[:n])
        try:
            if getattr(importlib.import_module(module), cls.__qualname__, None) is cls:
                return f"{module}.{cls.__qualname__}"
        except ImportError:
            continue
    return f"{cls.__module__}.{cls.__qualname__}"


def describe(cls, kwargs: Mapping) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return public_name(cls) + (f"({args})" if args else "")


# -- building subjects from strings (CLI and pytest options) -------------------------------------
def load_class(target) -> type:
    """``"package.module:Class"`` (or ``package.module.Class``) to the class; a class passes."""
    if isinstance(target, type):
        return target
    module_name, sep, attr = str(target).partition(":")
    if not sep:
        module_name, _, attr = str(target).rpartition(".")
    if not module_name or not attr:
        raise SubjectError(f"target {target!r} is not of the form 'package.module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise SubjectError(f"cannot import {module_name!r} (from target {target!r}): {e}") from None
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise SubjectError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise SubjectError(f"{target!r} is not a torch.optim.Optimizer subclass")
    return cls


def parse_kwargs(pairs) -> dict:
    """``["fused=True", "lr=1e-3", "name=x"]`` to kwargs (Python literals, else strings)."""
    kwargs = {}
    for pair in pairs or ():
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise SubjectError(f"kwarg {pair!r} is not of the form name=value")
        try:
            kwargs[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            kwargs[key] = text
    return kwargs


def entries_for(cls, like=None) -> list[registry.Entry]:
    """The registry entries a class claims: ``like`` by name, else by its class hierarchy."""
    if like:
        names = [like] if isinstance(like, str) else list(like)
        unknown = [n for n in names if n not in registry.BY_NAME]
        if unknown:
            raise SubjectError(
                f"unknown registry entry {unknown[0]!r}; known: {', '.join(registry.BY_NAME)}"
            )
        return [registry.BY_NAME[n] for n in names]
    for klass in cls.__mro__:
        found = [e for e in registry.REGISTRY if e.torch_name == klass.__name__]
        if found:
            return found
    raise SubjectError(
        f"cannot tell which spec {cls.__qualname__} implements; pass --like with one of: "
        + ", ".join(registry.BY_NAME)
    )


def subjects(
    target, like=None, kwargs=None, contract="ulp", reference="matching", without=()
) -> list:
    """Subjects for one target: one per registry entry it claims, ``without`` the capabilities
    the user declares it lacks. Raises ``SubjectError``."""
    cls = load_class(target)
    kwargs = dict(kwargs or {})
    entries = entries_for(cls, like)
    _check_kwargs(cls, kwargs, dims=max(1, min(e.param_dims[0] for e in entries)))
    return [
        Subject(cls, e, kwargs, contract, reference, without=parse_without(without))
        for e in entries
    ]


def parse_without(without) -> frozenset:
    """``"sparse,closure"`` or ``["sparse", "closure"]`` to the capabilities; an unknown one
    raises ``SubjectError`` naming it."""
    names = without.split(",") if isinstance(without, str) else list(without or ())
    chosen = frozenset(n.strip() for n in names if n.strip())
    if unknown := sorted(chosen - set(CAPABILITIES)):
        raise SubjectError(
            f"unknown capability {unknown[0]!r}; expected some of {', '.join(CAPABILITIES)}"
        )
    return chosen


def declare_without(subject: Subject, without) -> Subject:
    """``subject`` with the user's declared lacks added (a built-in suite's subjects)."""
    chosen = parse_without(without)
    return dataclasses.replace(subject, without=subject.without | chosen) if chosen else subject


def _check_kwargs(cls, kwargs: dict, dims: int = 1) -> None:
    """Construct on one param of the fewest dims the claimed entries draw (Muon takes 2-d
    params only: a 1-d probe would report its own refusal as the subject's)."""
    p = torch.zeros((1,) * dims, requires_grad=True)
    try:
        cls([p], **kwargs)
    except TypeError as e:
        raise SubjectError(f"{describe(cls, kwargs)} cannot be constructed: {e}") from None
    except (ValueError, RuntimeError) as e:
        what = "its kwargs" if kwargs else "construction with its defaults"
        raise SubjectError(f"{describe(cls, kwargs)} refuses {what}: {e}") from None


def torch_reference(subject: Subject) -> Subject:
    """torch.optim's class for the subject's entry, as a subject without flags of its own."""
    return Subject(
        subject.entry.reference, subject.entry, label=f"torch.optim.{subject.entry.torch_name}"
    )


def impl_subjects() -> list[Subject]:
    """The default run: impl's class for every entry, bitwise against torch.optim."""
    return [Subject(e.impl, e) for e in registry.REGISTRY]


# torch's fused=True (and impl's, its drop-in) takes real floating params only
FUSED_LACKS = {
    "complex": "fused=True takes real floating params only (torch's RuntimeError \"`fused=True` "
    'requires all the params to be floating point Tensors"; impl raises the same)',
}


def torch_paths() -> list[Subject]:
    """torch.optim itself under the ``ulp`` contract: foreach=True, and fused=True where offered;
    a class with one path (SparseAdam, Muon, LBFGS) as it is."""
    out = []
    for e in registry.REGISTRY:
        if "foreach" not in inspect.signature(e.reference).parameters:
            out.append(Subject(e.reference, e, {}, "ulp"))
            continue
        out.append(Subject(e.reference, e, {"foreach": True}, "ulp"))
        if e.torch_name in FUSED_CLASSES:
            out.append(Subject(e.reference, e, {"fused": True}, "ulp", lacks=FUSED_LACKS))
    return out


def impl_fused() -> list[Subject]:
    """impl's own single-pass kernels (``fused=True``, the ``fast`` extra) under the ``ulp``
    contract: within the derived bound of the exact spec; the distance to torch's for-loop path
    is reported."""
    return [
        Subject(e.impl, e, {"fused": True}, "ulp", lacks=FUSED_LACKS)
        for e in registry.REGISTRY
        if e.torch_name in FUSED_CLASSES
    ]


SUITES = {"impl": impl_subjects, "torch": torch_paths, "impl-fused": impl_fused}
