"""SymPy specs of the optimizers, numeric oracles derived from them, and symbolic proofs."""

from .algorithms import adagrad, adam, adamw, all_torch_specs, for_group, rmsprop, sgd
from .core import Hyper, Spec, StateVar
from .papers import VARIANTS as PAPER_VARIANTS
from .rounding import FORMATS, round_to_format, ulp_distance
from .seed import VARIANTS as SEED_VARIANTS

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
