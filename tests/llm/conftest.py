"""The LLM tier in a factory of its own: the CUDA platform's fixtures (fresh devpi and
registry, the CUDA 13 base built from the wheelhouse), reused as they are."""

from tests.cuda.conftest import factory, platform, session

__all__ = ["factory", "platform", "session"]
