"""The local stack: Ocelot sandbox, AWS in moto, the real handlers on loopback (docs/local-stack.md).

`python -m tools.local.<module>` runs from the repository root without the layer installed, so the layer's
folder is put on sys.path here, as Lambda puts a layer's content on /opt/python.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYER_DIR = ROOT / "layers" / "shared"

if str(LAYER_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_DIR))
