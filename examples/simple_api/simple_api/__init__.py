"""simple_api: a small Flask web API that ferry packages in its demo and tests."""

__version__ = "1.0.0"
