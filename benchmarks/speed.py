"""Speed of impl relative to torch.optim, measured interleaved in one run: ``python -m
benchmarks`` (``nox -s bench``). Prints ratios and writes them, with the machine, to
``reports/bench.json``; asserts nothing: machines are noisy, so speed targets live here and
never in timed tests.

Sections: ``fused`` (impl's single-pass kernels vs torch's fused step), ``for-loop`` (the
default CPU path), ``first-call`` (the kernels' compile cost: cold, and from numba's on-disk
cache, each in a fresh process) and ``memory`` (a step's peak extra resident memory, measured in
a fresh process per side).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
# the fused targets: one config per class torch offers fused=True for on CPU
FUSED = {
    "Adam": {},
    "AdamW": {},
    "SGD": {"momentum": 0.9},
    "Adagrad": {},
}
FUSED_SHAPES = {"100x100k": (100, 100_000), "1000x1k": (1000, 1_000), "1x50M": (1, 50_000_000)}
FOR_LOOP_SHAPES = {"200x20k": (200, 20_000), "100x100k": (100, 100_000)}


def _params(tensors: int, size: int, dtype=torch.float32) -> list[torch.Tensor]:
    # Values are irrelevant to speed; a fixed ramp keeps the run free of RNG.
    params = [torch.linspace(-1, 1, size, dtype=dtype) for _ in range(tensors)]
    for p in params:
        p.grad = torch.full_like(p, 1e-3)
    return params


def _time_steps(opt: torch.optim.Optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - start) / steps


def measure(name, kwargs, *, tensors, size, dtype=torch.float32, repeats=7, steps=5):
    """Median step time of impl's and torch's class on identical params, interleaved."""
    base = name.split("[")[0]
    runs = {}
    for label, cls in (("impl", getattr(impl, base)), ("torch", getattr(torch.optim, base))):
        opt = cls(_params(tensors, size, dtype), lr=1e-3, **kwargs)
        opt.step()  # state, and impl's kernels, exist before timing
        runs[label] = (opt, [])
    for _ in range(repeats):  # interleaved, so drift hits both sides alike
        for opt, samples in runs.values():
            samples.append(_time_steps(opt, steps))
    impl_s, torch_s = (statistics.median(runs[k][1]) for k in ("impl", "torch"))
    return {"impl_ms": impl_s * 1e3, "torch_ms": torch_s * 1e3, "ratio": impl_s / torch_s}


_CHILD = """
import sys, time, torch
from pathlib import Path
torch.set_num_threads({threads})
{setup}
t0 = time.perf_counter()
import impl
opt = {cls}(params, lr=1e-3, fused=True{kwargs})
opt.step()
first = time.perf_counter() - t0

def status(key):  # kB, from /proc/self/status
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
    return int(line.split()[1]) * 1024

Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
before = status("VmRSS:")
opt.step()
print(first, status("VmHWM:") - before)
"""


def _child(cls: str, setup: str, kwargs: str = "", env=None) -> tuple[float, int]:
    """(seconds to import impl, build and take the first step; how far the second step's peak
    resident memory rose above the memory before it, in bytes), in a fresh interpreter."""
    code = _CHILD.format(threads=torch.get_num_threads(), setup=setup, cls=cls, kwargs=kwargs)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    first, extra = out.stdout.split()
    return float(first), int(extra)


def first_call() -> dict:
    """Cold: an empty numba cache directory; cached: the same directory, second process."""
    setup = "params = [torch.zeros(1000) for _ in range(4)]\nfor p in params: p.grad = p + 1"
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        cold, _ = _child("impl.Adam", setup, env=env)
        cached, _ = _child("impl.Adam", setup, env=env)
    return {"cold_s": cold, "cached_s": cached, "what": "import impl, Adam(fused=True), 1 step"}


def memory(size: int = 10_000_000) -> dict:
    """Peak extra resident memory of one fused Adam step (state already allocated), impl vs
    torch, each in a fresh process: contiguous params, and a transposed param with a contiguous
    gradient (impl stages row-major copies of the param and its state; torch's kernel ignores
    the strides, README finding 1)."""
    out = {}
    for layout, view in (("contiguous", ""), ("transposed", ".reshape(1000, -1).mT")):
        setup = (
            f"params = [torch.zeros({size}){view}]\nparams[0].grad = torch.ones(params[0].shape)"
        )
        for side, cls in (("impl", "impl.Adam"), ("torch", "torch.optim.Adam")):
            _, extra = _child(cls, setup)
            out[f"{layout}/{side}_MB"] = extra / 2**20
    out["param_MB"] = size * 4 / 2**20
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    try:
        import numba

        info["numba"] = numba.__version__
        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        info["numba"] = None
    return info


def _print_rows(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print(f"{'optimizer':<15}{'dtype':<10}{'shape':<10}{'impl ms':>10}{'torch ms':>10}{'ratio':>8}")
    for r in rows:
        print(
            f"{r['optimizer']:<15}{r['dtype']:<10}{r['shape']:<10}"
            f"{r['impl_ms']:>10.2f}{r['torch_ms']:>10.2f}{r['ratio']:>8.2f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=" ".join(__doc__.split("\n\n")[0].split())
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument(
        "--sections", default="fused,for-loop,first-call,memory", help="comma-separated"
    )
    parser.add_argument("--out", default="reports/bench.json")
    args = parser.parse_args(argv)
    sections = args.sections.split(",")
    report = {"machine": machine(), "repeats": args.repeats, "steps": args.steps}
    print(json.dumps(report["machine"]))
    timing = {"repeats": args.repeats, "steps": args.steps}
    if "fused" in sections:
        rows = []
        for dtype in (torch.float32, torch.bfloat16):
            for shape, (tensors, size) in FUSED_SHAPES.items():
                for name, kwargs in FUSED.items():
                    t = measure(
                        name,
                        {**kwargs, "fused": True},
                        tensors=tensors,
                        size=size,
                        dtype=dtype,
                        **timing,
                    )
                    rows.append({"optimizer": name, "dtype": str(dtype)[6:], "shape": shape, **t})
        _print_rows("fused=True: impl's kernels / torch's fused step", rows)
        report["fused"] = rows
    if "for-loop" in sections:
        rows = []
        for shape, (tensors, size) in FOR_LOOP_SHAPES.items():
            for name, kwargs in CONFIGS.items():
                t = measure(
                    name, {**kwargs, "foreach": False}, tensors=tensors, size=size, **timing
                )
                rows.append({"optimizer": name, "dtype": "float32", "shape": shape, **t})
        _print_rows("for-loop path: impl / torch", rows)
        report["for_loop"] = rows
    if "first-call" in sections:
        report["first_call"] = first_call()
        print("\nfirst call (fresh process):", json.dumps(report["first_call"]))
    if "memory" in sections:
        report["memory"] = memory()
        print("\npeak extra memory of one fused Adam step:", json.dumps(report["memory"]))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
