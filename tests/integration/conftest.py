"""Integration tests use the shared session fixtures of tests/conftest.py."""
