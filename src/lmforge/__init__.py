"""lmforge: from raw text to a deployed language model of your own."""

__version__ = "0.1.0"


def load(path, dtype=None):
    """Load a run (or checkpoint) directory as a `LanguageModel` with .generate/.chat/.perplexity."""
    from lmforge.api import load as _load
    return _load(path, dtype=dtype)


def run(recipe, out, overrides=None, force=False):
    """Run a recipe end to end into the run directory `out`."""
    from lmforge.api import run as _run
    return _run(recipe, out, overrides=overrides, force=force)
