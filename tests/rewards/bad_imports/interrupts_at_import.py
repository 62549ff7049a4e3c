"""Raises KeyboardInterrupt while being imported (issue 26 G7: a traceback)."""
raise KeyboardInterrupt
