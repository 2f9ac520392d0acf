"""Error bounds derived from the math, never set from a measurement.

- ``rounding``: the shared model (unit roundoff, compounded roundings);
- ``torch_order``: the ``spec`` check's one-step bounds per elementwise rule, counted along
  torch's op sequence, with the absolute terms of gradual underflow (docs/bounds.md);
- ``structured``: the bounds of the kinds for reductions and matrix products (Adafactor, Muon,
  LBFGS).
"""
