"""Figures of the project, apart from the harness so that ``conformance`` never needs matplotlib
(the ``plot`` extra).

- ``seed``    the seed post's experiment reproduced with impl and torch.optim, and corrected;
- ``heat``    a conformance report (``reports/*.json``) as an optimizer × check × dtype table;
- ``canvas``  the resolution and the saving that every figure shares;
- ``cli``     ``python -m plots``, which writes them all under ``reports/``.

Nothing here is imported by ``conformance``; ``heat`` reads the report's JSON rows and takes only
``conformance.report.measure`` from the harness.
"""
