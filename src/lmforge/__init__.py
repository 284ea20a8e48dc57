"""lmforge: from raw text to a deployed language model of your own."""

__version__ = "0.1.0"
