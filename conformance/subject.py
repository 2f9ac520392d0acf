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
from conformance.core.case import DTYPES
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
    # dtype -> why the subject does not take it, declared where the subject is defined (a built-in
    # suite): those rows are skips with the reason, not undeclared refusals
    lacks: Mapping = field(default_factory=dict)

    def __post_init__(self):
        if self.contract not in CONTRACTS:
            raise SubjectError(f"unknown contract {self.contract!r}; expected one of {CONTRACTS}")
        if self.reference not in REFERENCES:
            raise SubjectError(
                f"unknown reference {self.reference!r}; expected one of {REFERENCES}"
            )
        if not self.label:
            object.__setattr__(self, "label", describe(self.cls, self.kwargs))
        if self.kwargs.get("fused") and self.entry.sparse_grads == "maybe":
            # torch's fused kernels refuse sparse gradients, so a fused path is drawn dense ones
            # (its refusal is pinned by tests/test_impl_fused.py)
            object.__setattr__(self, "entry", dataclasses.replace(self.entry, sparse_grads="never"))

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
# how a dtype refusal's reason starts: a skip row with it ran no example, and the run fails
# unless the lack is declared (--dtypes) or refused by the registry
REFUSES = "the subject refuses"


def _probe_loss(p):
    return p.sum().detach()


def _probe(cls, kwargs: Mapping, dtype: str, device: str, entry) -> str | None:
    """None if one step with a dense gradient, or else with a sparse one (SparseAdam takes
    only those), runs; otherwise the dense step's error. The param has the fewest dims the
    entry draws (at least 1: Muon's are 2-d); a closure optimizer steps with a closure."""
    refusal = None
    shape = (2,) * max(1, entry.param_dims[0])
    for sparse in (False, True):
        try:
            p = torch.zeros(shape, dtype=DTYPES[dtype], device=device, requires_grad=True)
            grad = torch.ones_like(p)
            p.grad = grad.to_sparse() if sparse else grad
            opt = cls([p], **kwargs)
            opt.step(functools.partial(_probe_loss, p) if entry.objective else None)
            return None
        except Exception as e:  # a subject may refuse anything; the report shows the reason
            refusal = refusal or f"{REFUSES} {dtype} on {device}: {type(e).__name__}: {e}"
    return refusal.splitlines()[0]


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


def subjects(target, like=None, kwargs=None, contract="ulp", reference="matching") -> list:
    """Subjects for one target: one per registry entry it claims. Raises ``SubjectError``."""
    cls = load_class(target)
    kwargs = dict(kwargs or {})
    _check_kwargs(cls, kwargs)
    return [Subject(cls, e, kwargs, contract, reference) for e in entries_for(cls, like)]


def _check_kwargs(cls, kwargs: dict) -> None:
    p = torch.zeros(1, requires_grad=True)
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
FUSED_LACKS = dict.fromkeys(
    registry.COMPLEX_DTYPES,
    "fused=True takes real floating params only (torch's RuntimeError \"`fused=True` requires all "
    'the params to be floating point Tensors"; impl raises the same)',
)


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
