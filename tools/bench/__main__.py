"""python -m tools.bench (what `make bench` runs)."""

import sys

from tools.bench.run import main

sys.exit(main())
