"""Hypothesis runs derandomized: every machine (a learner's, CI's) checks the same examples, so a
property test that passes here passes there, and a failure it finds reproduces everywhere."""

from hypothesis import settings

settings.register_profile("qlab", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("qlab")
