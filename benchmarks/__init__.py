"""Measurements that assert nothing, run from the repository root (``nox -s bench``) and not
shipped with the distribution.

- ``speed``  impl/torch.optim step-time ratios, first-call and memory costs: ``python -m
             benchmarks`` writes ``reports/bench.json``.
"""
