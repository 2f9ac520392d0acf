"""Reproductions in plain torch: a failure's case as a script that imports nothing of this project.

A user pastes it into an issue tracker: it builds the same params (values, dtype, memory layout),
param groups, starting state and gradients, runs the optimizer(s) compared, and prints where
they differ.
"""

from __future__ import annotations

from textwrap import indent

import numpy as np

from conformance.core.case import Sparse

_PRELUDE = '''\
import importlib

import torch


def load(path):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def T(values, dtype, device="cpu", layout="contiguous"):
    """Exactly these values (complex: (re, im) pairs) in the layout the harness drew."""
    dtype = getattr(torch, dtype)
    if isinstance(values, dict):  # an empty tensor: a nested list cannot hold its shape
        t = torch.zeros(values["empty"], dtype=torch.float64)
    else:
        t = torch.tensor(values, dtype=torch.float64)
    if dtype.is_complex:
        real = t.to(dtype.to_real()).contiguous()
        t = torch.view_as_complex(real) if t.numel() else torch.empty(t.shape[:-1], dtype=dtype)
    t = t.to(device=device, dtype=dtype)
    if layout == "transposed":
        return t.mT.contiguous().mT
    if layout == "strided":
        base = torch.zeros((*t.shape[:-1], 2 * t.shape[-1]), dtype=dtype, device=device)
        base[..., ::2] = t
        return base[..., ::2]
    return t


def G(g, like):
    """A gradient for param ``like``: dense values, or a sparse COO dict (repeated indices kept)."""
    if not isinstance(g, dict) or "empty" in g:
        return T(g, str(like.dtype).removeprefix("torch."), like.device)
    values = T(g["values"], str(like.dtype).removeprefix("torch."), like.device)
    indices = torch.tensor(g["indices"], dtype=torch.long).reshape(len(g["indices"]), -1)
    t = torch.sparse_coo_tensor(indices, values.reshape(g["shape"]), like.shape)
    return t.coalesce() if g["coalesced"] else t


def run(cls, kwargs, dtype, device, params, groups, state, grads, tensor_lr=False,
        grad_scale=None, found_inf=(), tensor_betas=False):
    """``grads`` as set on p.grad; with a ``grad_scale``, they are the scaled gradients and each
    step first gets GradScaler's ``grad_scale``/``found_inf`` attributes, as its fused path reads
    them."""
    params = [T(v, dtype, device, layout) for v, layout in params]
    opt = cls(
        [
            {
                **{k: v for k, v in g.items() if k != "params"},
                **({"lr": torch.tensor(g["lr"])} if tensor_lr else {}),
                **({"betas": tuple(torch.tensor(b, dtype=torch.float64) for b in g["betas"])}
                   if tensor_betas else {}),
                "params": [params[i] for i in g["params"]],
            }
            for g in groups
        ],
        **kwargs,
    )
    if state:
        sd = opt.state_dict()
        sd["state"] = {
            i: {
                k: v if isinstance(v, int) else torch.tensor(v) if k == "step"
                else T(v, dtype, device)
                for k, v in s.items()
            }
            for i, s in state.items()
        }
        opt.load_state_dict(sd)
    for t, step in enumerate(grads):
        for p, g in zip(params, step):
            p.grad = None if g is None else G(g, p)
        if grad_scale is not None:
            opt.grad_scale = torch.tensor(grad_scale, device=device)
            opt.found_inf = torch.tensor(found_inf[t], device=device)
        opt.step()
    return params, opt


def show(name, params, opt):
    for i, p in enumerate(params):
        print(f"{name} param {i}:", p)
    for i, (p, s) in enumerate(opt.state.items()):
        print(f"{name} state {i}:", {k: v for k, v in s.items()})
'''


def import_path(cls) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def run_of(subject, foreach, case) -> dict:
    """One run of a check, as plain data: the class, its kwargs and the case it ran."""
    kwargs = dict(subject.kwargs)
    if subject.takes_foreach:
        kwargs["foreach"] = foreach
    return {"cls": import_path(subject.cls), "kwargs": kwargs, "case": case}


def _list(a) -> object:
    if isinstance(a, Sparse):
        return {
            "indices": a.indices.tolist(),
            "values": a.values.tolist(),
            "shape": list(a.values.shape),
            "coalesced": a.coalesced,
        }
    if a is None:
        return None
    a = np.asarray(a)
    # [] would come back 1-d: an empty (0, 3) param replayed transposed then raises
    return {"empty": list(a.shape)} if a.size == 0 else a.tolist()


def _call(run: dict) -> str:
    c = run["case"]
    state = {
        i: {k: (v if isinstance(v, float | int) else _list(v)) for k, v in s.items()}
        for i, s in c.state.items()
    }
    return (
        f"run(load({run['cls']!r}), {run['kwargs']!r}, {c.dtype!r}, {c.device!r},\n"
        f"    params={[(_list(p.values), p.layout) for p in c.params]!r},\n"
        f"    groups={c.groups!r},\n"
        f"    state={state!r},\n"
        f"    grads={[[_list(g) for g in step] for step in c.grads]!r},\n"
        f"    tensor_lr={c.tensor_lr!r}"
        + ("" if c.grad_scale is None else f", grad_scale={c.grad_scale!r}")
        + ("" if c.grad_scale is None else f", found_inf={c.found_inf[: c.steps]!r}")
        + (", tensor_betas=True" if c.tensor_betas else "")
        + ")"
    )


def plain_torch(runs, case, what: str) -> str:
    """The script for ``runs`` (one: show it; two: compare them bit for bit)."""
    body = [_PRELUDE]
    names = "ab"
    for name, r in zip(names, runs):
        body.append(f"{name}_params, {name}_opt = {_call(r)}")
    if len(runs) == 2:
        body.append(
            "for i, (a, b) in enumerate(zip(a_params, b_params)):\n"
            "    a = torch.view_as_real(a) if a.is_complex() and not b.is_complex() else a\n"
            "    print(f'param {i}: bitwise equal {torch.equal(a, b)}; a={a}; b={b}')\n"
            "for i, (sa, sb) in enumerate(zip(a_opt.state.values(), b_opt.state.values())):\n"
            "    for k in sb:\n"
            "        print(f'state {i} {k!r}: a={sa.get(k)}; b={sb[k]}')"
        )
    elif runs:
        body.append("show('result', a_params, a_opt)")
    body.append(f"# the harness saw the difference at: {what}")
    return indent("\n".join(body), "    ") + "\n"
