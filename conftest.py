"""Root conftest: the Hypothesis profiles (conformance/core/profiles.py) for the unit tests too.

The conformance matrix's own options (``--device``, ``--conformance-*``) live in the pytest plugin
``conformance/plugin.py`` (a ``pytest11`` entry point), so that they also work with
``pytest --pyargs conformance``.
"""

import torch

from conformance.core import profiles

profiles.load_from_env()


def pytest_configure(config):
    # One intra-op thread per process: xdist workers share the cores.
    torch.set_num_threads(1)
