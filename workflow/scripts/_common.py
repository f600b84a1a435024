"""Shared start-up of the entry points: make the pi_repro package importable without installing it."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
