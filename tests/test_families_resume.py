"""Exact resume after SIGKILL, and 2-rank torchrun training, for the encoder and recurrent families.

The recurrent model's carried hidden state and the masked-LM's masks are part of what must come
back exactly: a resumed run gives the very same loss at every step."""

import pytest

from conftest import lmforge, tiny_corpus_dir, tiny_recipe
from test_train_resume import (OVERRIDES, assert_two_ranks_match, kill_after_step_20, losses_of_a_full_run,
                               train_losses)

# no dropout: ranks draw their own dropout masks, which a single process draws in sequence
FAMILIES = {
    "bert": ["--set", "model.preset=bert-tiny", "--set", "model.dropout=0.0"],
    "lstm": ["--set", "model.arch=lstm", "--set", "model.preset=rnn-tiny", "--set", "model.dropout=0.0"],
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def prepared(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"resume-{request.param}")
    recipe = tiny_recipe(root, tiny_corpus_dir(root))
    run = root / "prepared"
    out = lmforge("prepare", str(run), "--recipe", str(recipe), *OVERRIDES, *FAMILIES[request.param])
    assert out.returncode == 0, out.stderr
    return request.param, run


@pytest.fixture(scope="module")
def uninterrupted(prepared, tmp_path_factory):
    return losses_of_a_full_run(prepared[1], tmp_path_factory.mktemp("full") / "run")


def test_sigkill_then_resume_gives_the_same_loss_sequence(prepared, uninterrupted, tmp_path):
    family, base = prepared
    run = tmp_path / "killed"
    kill_after_step_20(base, run)
    out = lmforge("train", str(run), "--resume")
    assert out.returncode == 0, out.stderr
    assert "resuming at step 20" in out.stdout
    assert train_losses(run) == uninterrupted, family


def test_two_ranks_match_one_process(prepared, uninterrupted, tmp_path):
    # the same global batch split over 2 ranks: the same losses up to float summation order
    family, base = prepared
    assert_two_ranks_match(base, tmp_path / "ddp", uninterrupted)
