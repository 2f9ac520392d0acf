"""``python -m conformance audit TARGET [--like ENTRY] [--kwargs k=v ...] [--contract ...]``."""

import sys

from conformance.audit import main

sys.exit(main())
