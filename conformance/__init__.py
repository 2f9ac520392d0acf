"""The conformance harness: an optimizer vs torch.optim, vs its SymPy spec, and invariants.

Layers, lowest first; each imports only from the layers below it (``nox -s lint`` enforces it
with import-linter, ``[tool.importlinter]`` in pyproject.toml):

- ``core/``         a case as plain data, ULP distances, the judging context and assertions,
                    running a subject on a case, plain-torch reproductions, the Hypothesis
                    profiles, the gloo rank pool. It knows no check kind.
- ``bounds/``       error bounds derived from the math (never from a measurement);
- ``domains``       each algorithm's Hypothesis domains: hyperparameters and state layouts;
- ``strategies``    Hypothesis strategies that draw whole cases (no torch RNG anywhere);
  ``bad_input``     bad hyperparameters and non-finite gradients, drawn like good input;
  ``regressions``   cases that once broke a bound, replayed by every profile;
- ``registry``      one ``Entry`` per optimizer: its spec, torch class, domains, dtypes, bounds;
- ``subject``       what is checked: a class, fixed kwargs, the entry it claims, its contract;
- ``kinds/``        the check kinds, one module each;
- ``checks``        the table with one row per check kind (function, dtypes, entries, measure,
                    example weight) that drives the matrix;
- ``report``, ``slices``   report rows and the matrix in balanced slices;
- ``plugin``, ``audit``, ``__main__``, ``test_*.py``: the pytest plugin, the audit CLI and the
  pytest modules ``nox -s conformance`` runs.

docs/harness.md explains the check kinds, contracts and profiles; docs/adding-an-optimizer.md
lists every file a new optimizer touches.
"""
