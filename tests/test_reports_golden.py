"""The model card and report.html of a fixed run directory (tests/golden/run: a small run's real
files, with times and versions fixed), compared with the reviewed documents in tests/golden/.
A change to what either says shows here as a diff; after checking the new text, update the
golden file with it."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from lmforge.recipe import load_recipe
from lmforge.report.html import write_report
from lmforge.report.model_card import write_model_card
from lmforge.rundir import RunDir

GOLDEN = Path(__file__).parent / "golden"


def written(tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "run", run)
    recipe = load_recipe(run / "recipe.toml")
    write_model_card(RunDir(run), recipe)
    write_report(RunDir(run), recipe)
    return run


def test_the_model_card_is_the_reviewed_one(tmp_path):
    run = written(tmp_path)
    assert (run / "model_card.md").read_text() == (GOLDEN / "model_card.md").read_text()


def test_the_report_is_the_reviewed_one(tmp_path):
    run = written(tmp_path)
    page = (run / "report.html").read_text().replace(str(run), "RUN")
    plots = re.findall(r'src="data:image/png;base64,[^"]+"', page)
    assert len(plots) == 3                         # training curves, document lengths, governance: drawn
    page = re.sub(r'src="data:image/png;base64,[^"]+"', 'src="data:image/png;base64,..."', page)
    assert page == (GOLDEN / "report.html").read_text()
