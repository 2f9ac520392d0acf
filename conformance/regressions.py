"""Regression examples: cases that once broke a declared bound (issue 13), replayed forever.

The conformance tests draw with ``@given(data=st.data())``, where ``@example`` does not fit, so
the examples live here as a table of ``(check, registry entry name, Case)`` and
``conformance/test_regressions.py`` runs each through ``checks.CHECKS[check]`` under every
profile (the derandomized ``ci`` one included). A failure found by exploration joins the table
as the ``Case(...)`` literal its message printed, with a comment: what it caught and why.
"""

from __future__ import annotations

import numpy as np

from conformance.case import Case, P

REGRESSIONS = (
    # RMSprop float32, momentum buffer: weight_decay = 2**-149 (a double drawn from
    # st.floats(0, 0.5)) is float32's smallest subnormal; g = 0 + wd*p = 1.5 * 2**-149 rounds to
    # 2**-148, an absolute underflow error that m' = g/avg (avg ~ eps) amplified to 3.1e6 ULPs.
    # Fix (domain): spec hyperparameters are 0 or >= 2**-20 (registry, SPEC_MIN).
    (
        "spec",
        "RMSprop",
        Case(
            dtype="float32",
            device="cpu",
            params=[P(np.array(1.5), "contiguous")],
            groups=[
                {
                    "lr": 0.01,
                    "alpha": 0.99,
                    "eps": 1e-08,
                    "weight_decay": 1.401298464324817e-45,
                    "momentum": 0.5,
                    "centered": False,
                    "maximize": False,
                    "params": [0],
                }
            ],
            state={0: {"step": 1.0, "square_avg": np.array(0.0), "momentum_buffer": np.array(0.0)}},
            grads=[[np.array(0.0)]],
            foreach=None,
            torch_foreach=None,
            tensor_lr=False,
        ),
    ),
    # SGD-nesterov float32, momentum buffer: weight_decay = 5e-46 casts to 0 in the float32
    # compute type, so b' = wd*p = 0 where the exact value is 7.0e-45 (5 subnormal ULPs > 4).
    # Fix (domain): as above.
    (
        "spec",
        "SGD-nesterov",
        Case(
            dtype="float32",
            device="cpu",
            params=[P(np.array(14.0), "contiguous")],
            groups=[
                {
                    "lr": 0.5,
                    "momentum": 0.5,
                    "dampening": 0.0,
                    "weight_decay": 5e-46,
                    "nesterov": True,
                    "maximize": False,
                    "params": [0],
                }
            ],
            state={0: {"momentum_buffer": np.array(0.0)}},
            grads=[[np.array(0.0)]],
            foreach=None,
            torch_foreach=None,
            tensor_lr=False,
        ),
    ),
    # RMSprop complex64, momentum buffer: the same float32 cast of weight_decay = 5e-46 to 0,
    # then b' = g/avg with avg = eps = 1e-7: 0.0 vs exact 7.0e-38 (1.25e7 ULPs at scale).
    # Fix (domain): as above.
    (
        "spec",
        "RMSprop",
        Case(
            dtype="complex64",
            device="cpu",
            params=[P(np.array([14.0, 14.0]).reshape((2,)), "contiguous")],
            groups=[
                {
                    "lr": 0.01,
                    "alpha": 0.99,
                    "eps": 1e-07,
                    "weight_decay": 5e-46,
                    "momentum": 0.5,
                    "centered": False,
                    "maximize": False,
                    "params": [0],
                }
            ],
            state={
                0: {
                    "step": 1.0,
                    "square_avg": np.array([0.0, 0.0]).reshape((2,)),
                    "momentum_buffer": np.array([0.0, 0.0]).reshape((2,)),
                }
            },
            grads=[[np.array([0.0, 0.0]).reshape((2,))]],
            foreach=None,
            torch_foreach=None,
            tensor_lr=False,
        ),
    ),
    # Adagrad float16 (foreach): the numerator clr*g = 1.5 * 2**-24 is rounded into float16 by
    # torch's _foreach_mul (a tie among subnormals: to 2**-23), an absolute error of 2**-25
    # that the division by std = 2**-5 + eps turns into 16 ULPs of the (subnormal) result > 12.
    # Fix (analysis): the underflow term h/D of registry.adagrad_underflow.
    (
        "spec",
        "Adagrad",
        Case(
            dtype="float16",
            device="cpu",
            params=[P(np.array(0.0), "contiguous")],
            groups=[
                {
                    "lr": 0.00010013580322265625,
                    "lr_decay": 0.5,
                    "weight_decay": 0.0,
                    "initial_accumulator_value": 0.0,
                    "eps": 0.001,
                    "maximize": False,
                    "params": [0],
                }
            ],
            state={0: {"step": 68.0, "sum": np.array(0.0)}},
            grads=[[np.array(0.03125)]],
            foreach=True,
            torch_foreach=True,
            tensor_lr=False,
        ),
    ),
    # Adam float16: v' = (1 - beta2)*g**2 = 1e-4 * 2**-10 lands among float16's subnormals
    # (rounded by 25%), and sqrt(v')/sqrt(1 - beta2) + eps carries half of that into the step.
    # Fix (analysis): the square-root underflow term of registry.adam_underflow.
    (
        "spec",
        "Adam",
        Case(
            dtype="float16",
            device="cpu",
            params=[P(np.array(0.0), "contiguous")],
            groups=[
                {
                    "lr": 0.001,
                    "betas": (0.9, 0.9999),
                    "eps": 0.001,
                    "weight_decay": 0.0,
                    "amsgrad": False,
                    "maximize": False,
                    "params": [0],
                }
            ],
            state={},
            grads=[[np.array(0.03125)]],
            foreach=None,
            torch_foreach=None,
            tensor_lr=False,
        ),
    ),
)
