"""Lets these tests import the plugin from a checkout that has not installed it (pip install -e . makes this moot)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
