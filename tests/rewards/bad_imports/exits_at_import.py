"""Calls sys.exit while being imported (the run used to exit 3 with no output)."""
import sys

sys.exit(3)
