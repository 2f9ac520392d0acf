"""``python -m benchmarks``: see ``benchmarks.speed``."""

from benchmarks.speed import main

main()
