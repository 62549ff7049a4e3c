"""Modules that fail at import in the ways a user's reward module can (issue 16, F14); imported only by the
tests that name them in a config."""
