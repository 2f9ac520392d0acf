"""``python -m specs``: print every spec and variant, run every proof; exit 1 if one fails."""

from __future__ import annotations

import sys

from . import ALL_SPECS
from .proofs import ALL_PROOFS


def main() -> int:
    for spec in ALL_SPECS:
        print(spec.pretty(), end="\n\n")
    failures = 0
    print("Proofs")
    for proof in ALL_PROOFS:
        result = proof()
        verdict = "proved" if result.proved else f"FAILED, residual {result.residual}"
        print(f"  {result.name}: {verdict}\n    {result.statement}")
        for name, value in result.derived.items():
            if len(str(value)) <= 120:  # closed forms of heavy ball are too long to be readable
                print(f"    {name} = {value}")
        failures += not result.proved
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
