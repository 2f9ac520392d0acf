"""The conformance harness: impl vs torch.optim, vs the SymPy specs, and invariants.

Layout (after data-apis/array-api-tests, helpers and their ``test_*.py`` side by side):

- ``ulp``         ULP distances (ordered-integer mapping) and the ULP-at-scale error measure;
- ``case``        a drawn case as plain data: params, groups, starting state, gradient sequence;
- ``strategies``  Hypothesis strategies that draw cases (no torch RNG anywhere);
- ``registry``    one entry per optimizer: what it is compared with, domains, dtypes, bounds;
- ``checks``      the checks themselves, as plain functions of (entry, case) that raise
                  ``ConformanceError`` with an explanation and a repro snippet;
- ``report``      per-check rows (examples, max ULP, status) merged across xdist workers;
- ``profiles``    the Hypothesis profiles ``dev``, ``ci`` and ``thorough``;
- ``test_*.py``   the pytest modules that ``nox -s conformance`` runs.
"""
