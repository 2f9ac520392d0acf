"""Symbolic proofs about the specs. Each returns the simplified residual; zero means proved.

One module per algorithm family, as in ``specs``: ``specs.proofs.sgd``, ``specs.proofs.adam``,
…; ``specs.proofs.common`` holds ``ProofResult`` and ``symbolic_step``. The proofs iterate the
specs' own equations symbolically, so they are about the rules the oracles evaluate, not about
copies of them. ``python -m specs`` runs ``ALL_PROOFS`` in order.
"""

from __future__ import annotations

from collections.abc import Callable

from .adafactor import adafactor_factors_are_weighted_means, adafactor_rank_one_reconstruction
from .adam import adam_implementable_form, ema_lerp_form
from .adamax import adamax_eps_placement
from .asgd import asgd_averaging, asgd_polyak_juditsky
from .common import Env, ProofResult, symbolic_step
from .lbfgs import lbfgs_two_loop_is_bfgs_product
from .muon import muon_newton_schulz_on_svd, muon_scale_invariance
from .nadam import nadam_dozat_vs_torch, nadam_mu_product
from .radam import radam_rho_closed_form, radam_threshold_band
from .rprop import rprop_backtracking
from .sgd import nesterov_lr_schedule, nesterov_rewrite, quadratic_closed_forms
from .sparse_adam import sparse_adam_is_scaled_eps_adam

ALL_PROOFS: list[Callable[[], ProofResult]] = [
    nesterov_rewrite,
    nesterov_lr_schedule,
    adam_implementable_form,
    ema_lerp_form,
    quadratic_closed_forms,
    radam_rho_closed_form,
    nadam_mu_product,
    adamax_eps_placement,
    asgd_averaging,
    nadam_dozat_vs_torch,
    radam_threshold_band,
    rprop_backtracking,
    asgd_polyak_juditsky,
    sparse_adam_is_scaled_eps_adam,
    adafactor_rank_one_reconstruction,
    adafactor_factors_are_weighted_means,
    muon_newton_schulz_on_svd,
    muon_scale_invariance,
    lbfgs_two_loop_is_bfgs_product,
]

__all__ = [
    "ALL_PROOFS",
    "Env",
    "ProofResult",
    "adafactor_factors_are_weighted_means",
    "adafactor_rank_one_reconstruction",
    "adam_implementable_form",
    "adamax_eps_placement",
    "asgd_averaging",
    "asgd_polyak_juditsky",
    "ema_lerp_form",
    "lbfgs_two_loop_is_bfgs_product",
    "muon_newton_schulz_on_svd",
    "muon_scale_invariance",
    "nadam_dozat_vs_torch",
    "nadam_mu_product",
    "nesterov_lr_schedule",
    "nesterov_rewrite",
    "quadratic_closed_forms",
    "radam_rho_closed_form",
    "radam_threshold_band",
    "rprop_backtracking",
    "sparse_adam_is_scaled_eps_adam",
    "symbolic_step",
]
