"""Test-session settings: hypothesis runs derandomized (a fixed seed), so the fuzz tests check the
same examples on every machine and a CI run cannot fail on an example a local run never drew."""

from hypothesis import settings

settings.register_profile("qlab", derandomize=True, deadline=None)
settings.load_profile("qlab")
