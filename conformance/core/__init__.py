"""The judging core, which knows no check kind:

- ``case``: a drawn case as plain data (params, groups, starting state, gradients) and what a
  case is drawn for (``Purpose``);
- ``ulp``: ULP distances and the ULP-at-scale error measure;
- ``judge``: ``Context``, ``ConformanceError`` and the assertions that explain themselves;
- ``running``: running a subject on a case, and comparing two runs step by step;
- ``repro``: a failure's case as a plain-torch script;
- ``profiles``: the Hypothesis profiles and a check's share of examples;
- ``gloo``: the pool of gloo ranks the ``distributed`` check runs on.
"""
