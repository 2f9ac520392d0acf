"""Which spec a torch.optim param group follows: one table, ``FAMILIES``, from torch class name
to the factory that builds the spec and the flags that pick its equations.

A param group's flags (momentum on or off, nesterov, amsgrad, centered, maximize, …) choose the
equations; its numbers (lr, betas, eps, …) stay symbols and come back as ``for_group``'s hyper
dict. Adafactor, Muon and LBFGS are not elementwise and have statements of their own
(``specs.adafactor``, ``specs.muon``, ``specs.lbfgs``), not a Spec.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .adadelta import adadelta
from .adagrad import adagrad
from .adam import adam, adam_class, adamw
from .adamax import adamax
from .asgd import asgd
from .core import Spec
from .nadam import nadam
from .radam import radam
from .rmsprop import rmsprop
from .rprop import rprop
from .sgd import sgd
from .sparse_adam import sparse_adam

Reader = Callable[[Mapping], bool]


def _flag(key: str) -> Reader:
    """A boolean group option (absent: False)."""
    return lambda group: bool(group.get(key, False))


def _nonzero(key: str) -> Reader:
    """SGD's ``momentum != 0``: any momentum, negative included, keeps a buffer."""
    return lambda group: bool(group.get(key, 0) != 0)


def _positive(key: str) -> Reader:
    """RMSprop's ``momentum > 0``: torch keeps a momentum buffer only then."""
    return lambda group: bool(group.get(key, 0) > 0)


MAXIMIZE = _flag("maximize")


@dataclass(frozen=True)
class Family:
    """``build(**{keyword: read(group) for keyword, read in flags.items()})`` is the spec of a
    param group: ``flags`` maps each of the factory's keywords to how a group sets it."""

    build: Callable[..., Spec]
    flags: Mapping[str, Reader]

    def structure(self, group: Mapping) -> tuple[tuple[str, bool], ...]:
        """The flags that choose the equations (not the hyperparameter values), as a key."""
        return tuple(sorted((keyword, read(group)) for keyword, read in self.flags.items()))


FAMILIES: dict[str, Family] = {
    "SGD": Family(
        sgd, {"momentum": _nonzero("momentum"), "nesterov": _flag("nesterov"), "maximize": MAXIMIZE}
    ),
    "Adagrad": Family(adagrad, {"maximize": MAXIMIZE}),
    "RMSprop": Family(
        rmsprop,
        {"centered": _flag("centered"), "momentum": _positive("momentum"), "maximize": MAXIMIZE},
    ),
    # torch's Adam with decoupled_weight_decay=True takes AdamW's step
    "Adam": Family(
        adam_class,
        {
            "decoupled": _flag("decoupled_weight_decay"),
            "amsgrad": _flag("amsgrad"),
            "maximize": MAXIMIZE,
        },
    ),
    "AdamW": Family(adamw, {"amsgrad": _flag("amsgrad"), "maximize": MAXIMIZE}),
    "Adamax": Family(adamax, {"maximize": MAXIMIZE}),
    "NAdam": Family(nadam, {"decoupled": _flag("decoupled_weight_decay"), "maximize": MAXIMIZE}),
    "RAdam": Family(radam, {"decoupled": _flag("decoupled_weight_decay"), "maximize": MAXIMIZE}),
    "Adadelta": Family(adadelta, {"maximize": MAXIMIZE}),
    "ASGD": Family(asgd, {"maximize": MAXIMIZE}),
    "Rprop": Family(rprop, {"maximize": MAXIMIZE}),
    # the spec of the rows a gradient names has no flags; the group's maximize is not read
    "SparseAdam": Family(sparse_adam, {}),
}

# torch's tuple hyperparameters, split into the specs' scalar names.
_PAIRS = {
    "betas": ("beta1", "beta2"),
    "etas": ("etaminus", "etaplus"),
    "step_sizes": ("step_size_min", "step_size_max"),
}


def for_group(optimizer_name: str, group: Mapping) -> tuple[Spec, dict[str, float]]:
    """The spec and float hyperparameters for one torch param_group of ``optimizer_name``."""
    family = FAMILIES.get(optimizer_name)
    if family is None:
        raise KeyError(f"no spec for optimizer {optimizer_name!r}")
    spec = _spec(optimizer_name, family.structure(group))
    values = dict(group)
    for pair, names in _PAIRS.items():
        if pair in values:
            values[names[0]], values[names[1]] = values[pair]
    hyper = {h.name: float(values.get(h.name, h.default)) for h in spec.hypers}
    return spec, hyper


@functools.cache
def _spec(optimizer_name: str, structure: tuple[tuple[str, bool], ...]) -> Spec:
    """One Spec per structure, so that its oracles compile once: ``lambdify`` on every param
    group of every step would take most of the spec checks' run time."""
    return FAMILIES[optimizer_name].build(**dict(structure))


def all_torch_specs() -> list[Spec]:
    """Every structural combination (maximize shown once per optimizer, on the plain form)."""
    specs = [
        sgd(),
        sgd(momentum=True),
        sgd(momentum=True, nesterov=True),
        sgd(maximize=True),
        adagrad(),
        adagrad(maximize=True),
    ]
    specs += [rmsprop(centered=c, momentum=m) for c in (False, True) for m in (False, True)]
    specs.append(rmsprop(maximize=True))
    for factory in (adam, adamw):
        specs += [factory(), factory(amsgrad=True), factory(maximize=True)]
    specs += [adamax(), adadelta(), asgd(), rprop(), sparse_adam()]
    specs += [factory(decoupled=d) for factory in (nadam, radam) for d in (False, True)]
    return specs
