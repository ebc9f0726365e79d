"""Unit tests of the domain: the login and advisor use cases over fakes of every port, no I/O.

The fakes live in ``fakes.py`` beside this file; this directory goes on
``sys.path`` so that the test modules can ``from fakes import ...`` whatever
pytest's import mode.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
