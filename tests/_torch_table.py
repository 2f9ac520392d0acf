"""Replaying torch's own error-input table (``common_optimizers.py``) against any class."""

from __future__ import annotations

import copy
import warnings

import torch
from torch.nn import Parameter
from torch.testing._internal import common_optimizers as torch_table


def error_outcome(cls, error_input, shape: tuple = (2,)):
    """What constructing (and, for step-time errors, stepping) raises or warns: (class,
    message), or (None, None). ``shape``: of the param used where the table gives none (Muon
    takes 2-d params only)."""
    optim_input = copy.deepcopy(error_input.optimizer_error_input)
    params = optim_input.params
    if params is None:
        params = [Parameter(torch.zeros(shape))]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            opt = cls(params, **optim_input.kwargs)
            if error_input.error_on == torch_table.OptimizerErrorEnum.STEP_ERROR:
                for group in opt.param_groups:
                    for p in group["params"]:
                        p.grad = torch.ones_like(p)
                opt.step()
        except Exception as e:
            return type(e), str(e)
    for w in caught:
        if issubclass(w.category, UserWarning) and "optimizer" in str(w.message):
            return w.category, str(w.message)
    return None, None


def construction_outcome(cls, kwargs: dict, params=None, shape: tuple = (2,)):
    """What ``cls(params, **kwargs)`` raises: (class, message), or (None, None). ``params``
    default to one zero param of ``shape``."""
    try:
        cls(params if params is not None else [Parameter(torch.zeros(shape))], **kwargs)
    except Exception as e:
        return type(e), str(e)
    return None, None
