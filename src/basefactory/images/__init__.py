"""Layered images: definition -> lock -> render -> build -> smoke test -> push, parents first."""
