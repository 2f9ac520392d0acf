"""The conformance harness: impl vs torch.optim, vs the SymPy specs, and invariants.

Layout (after data-apis/array-api-tests, helpers and their ``test_*.py`` side by side):

- ``ulp``         ULP distances (ordered-integer mapping) and the ULP-at-scale error measure;
- ``case``        a drawn case as plain data: params, groups, starting state, gradient sequence;
- ``strategies``  Hypothesis strategies that draw cases (no torch RNG anywhere);
- ``registry``    one entry per optimizer: what it is compared with, domains, dtypes, bounds;
- ``subject``     what is checked: a class, fixed kwargs, the entry it claims, its contract
                  (``bitwise`` vs a torch.optim path, or ``ulp`` within the derived bound);
- ``checks``      the checks themselves, as plain functions of (subject, case) that raise
                  ``ConformanceError`` with an explanation and two reproductions;
- ``repro``       a failure's case as a plain-torch script;
- ``bad_input``   bad hyperparameters and non-finite gradients, drawn like good input;
- ``regressions`` cases that once broke a bound, run by every profile;
- ``plugin``      the pytest plugin (options, parametrization, report), an entry point;
- ``audit``       ``python -m conformance audit TARGET`` and ``audit()``;
- ``report``      per-check rows (examples, max ULP, status) merged across xdist workers;
- ``profiles``    the Hypothesis profiles ``dev``, ``ci`` and ``thorough``;
- ``distributed`` the ``distributed`` check: a pool of gloo ranks that run cases on DTensors;
- ``slices``      ``--splits N --group K``: one balanced share of the matrix per CI machine;
- ``test_*.py``   the pytest modules that ``nox -s conformance`` runs.
"""
