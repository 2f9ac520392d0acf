"""SymPy specs of the optimizers, numeric oracles derived from them, and symbolic proofs.

One module per algorithm family (``specs.sgd``, ``specs.adam``, …, ``specs.adafactor``,
``specs.muon``, ``specs.lbfgs``); ``specs.families`` maps a torch class name to its spec.
"""

# The factories ``specs.sgd``, ``specs.adagrad``, ``specs.rmsprop`` and ``specs.adam`` shadow the
# modules of the same name as attributes of ``specs``; ``from specs.sgd import …`` still reads
# the module.
from .adagrad import adagrad
from .adam import adam, adamw
from .core import Hyper, Spec, StateVar
from .families import all_torch_specs, for_group
from .papers import VARIANTS as PAPER_VARIANTS
from .rmsprop import rmsprop
from .rounding import FORMATS, round_to_format, ulp_distance
from .seed import VARIANTS as SEED_VARIANTS
from .sgd import sgd

# Named variants: the seed post's dialects and look-ahead Nesterov, then the papers' own forms.
VARIANTS: dict[str, Spec] = {**SEED_VARIANTS, **PAPER_VARIANTS}
ALL_SPECS: list[Spec] = [*all_torch_specs(), *VARIANTS.values()]

__all__ = [
    "ALL_SPECS",
    "FORMATS",
    "VARIANTS",
    "Hyper",
    "Spec",
    "StateVar",
    "adagrad",
    "adam",
    "adamw",
    "all_torch_specs",
    "for_group",
    "rmsprop",
    "round_to_format",
    "sgd",
    "ulp_distance",
]
