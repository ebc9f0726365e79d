"""Helpers shared by the tests (in-process servers, fakes)."""
