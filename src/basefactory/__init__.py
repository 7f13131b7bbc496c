"""basefactory: a base-image factory and private wheel index for GPU Python services."""

__version__ = "0.1.0"
