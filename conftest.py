"""Root conftest: the ``--device`` option and the Hypothesis profiles (see conformance/profiles)."""

import torch

from conformance import profiles

profiles.load_from_env()


def pytest_addoption(parser):
    parser.addoption(
        "--device",
        action="append",
        choices=("cpu", "cuda"),
        help="device(s) to run the conformance matrix on (default: cpu); repeatable",
    )


def pytest_configure(config):
    # One intra-op thread per process: xdist workers share the cores.
    torch.set_num_threads(1)
