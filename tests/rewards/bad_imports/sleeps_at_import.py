"""Sleeps while being imported (issue 26 G7: --validate never answered)."""
import time

time.sleep(600)
