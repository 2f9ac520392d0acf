"""Speed of impl relative to torch.optim, measured interleaved in one run: ``python -m
conformance.benchmark``. Prints ratios, asserts nothing: machines are noisy, so speed targets
live here and never in timed tests.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import impl

CONFIGS = {
    "SGD": {"momentum": 0.9},
    "SGD[nesterov]": {"momentum": 0.9, "nesterov": True},
    "Adagrad": {},
    "RMSprop": {"centered": True, "momentum": 0.9},
    "Adam": {},
    "AdamW": {"amsgrad": True},
}


def _params(tensors: int, elements: int) -> list[torch.Tensor]:
    size = max(1, elements // tensors)
    # Values are irrelevant to speed; a fixed ramp keeps the run free of RNG.
    return [torch.linspace(-1, 1, size) for _ in range(tensors)]


def _time_steps(opt: torch.optim.Optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def measure(name: str, foreach: bool, *, tensors: int, elements: int, repeats: int, steps: int):
    base = name.split("[")[0]
    kwargs = {**CONFIGS[name], "lr": 1e-3, "foreach": foreach}
    runs = {}
    for label, cls in (("impl", getattr(impl, base)), ("torch", getattr(torch.optim, base))):
        params = _params(tensors, elements)
        for p in params:
            p.grad = torch.full_like(p, 1e-3)
        runs[label] = (cls(params, **kwargs), [])
    for _ in range(repeats):  # interleaved, so drift hits both sides alike
        for opt, samples in runs.values():
            samples.append(_time_steps(opt, steps))
    return {label: statistics.median(samples) for label, (_, samples) in runs.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tensors", type=int, default=100)
    parser.add_argument("--elements", type=int, default=2_000_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"{args.tensors} float32 tensors, {args.elements:,} elements, "
        f"{torch.get_num_threads()} threads; median of {args.repeats} x {args.steps} steps"
    )
    print(f"{'optimizer':<15}{'path':<10}{'impl ms':>10}{'torch ms':>10}{'impl/torch':>12}")
    for name in CONFIGS:
        for foreach in (False, True):
            t = measure(
                name,
                foreach,
                tensors=args.tensors,
                elements=args.elements,
                repeats=args.repeats,
                steps=args.steps,
            )
            path = "foreach" if foreach else "for-loop"
            print(
                f"{name:<15}{path:<10}{t['impl'] * 1e3:>10.2f}{t['torch'] * 1e3:>10.2f}"
                f"{t['impl'] / t['torch']:>12.2f}"
            )


if __name__ == "__main__":
    main()
