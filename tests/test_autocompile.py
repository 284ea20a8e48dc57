"""train.compile = "auto": the decision follows the measured step times (fed here by a fake clock)."""

from __future__ import annotations

import json

import pytest
import torch

from lmforge.train import autocompile
from lmforge.train.autocompile import AutoCompile, pays


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))


def feed(auto: AutoCompile, times: list[float], steps_left: float) -> list[str | None]:
    return [auto.after_step(t, steps_left) for t in times]


def test_a_long_run_compiles_and_keeps_it_when_the_compiled_step_is_faster():
    auto = AutoCompile("k", torch.bfloat16)
    assert auto.start(lambda s: 1000) is None                      # nothing cached: measure first
    assert feed(auto, [2.0, 1.0, 1.0, 1.0], 1000) == [None, None, None, "compile"]
    assert feed(auto, [31.0, 0.5, 0.6, 0.5], 1000) == [None, None, None, None]   # 30 s compiling, then 0.5 s
    d = auto.decision
    assert d.compile and d.eager_step_s == 1.0 and d.compiled_step_s == 0.5 and d.compile_s == 30.5
    # the next run of the same shape decides from the cache, before its first step
    again = AutoCompile("k", torch.bfloat16)
    assert again.start(lambda s: 1000) == "compile" and again.decision.source == "cache"
    short = AutoCompile("k", torch.bfloat16)
    assert short.start(lambda s: 20) is None and not short.decision.compile   # 20 steps x 0.5 s saved < 30.5 s


def test_a_compiled_step_that_is_slower_goes_back_to_eager():
    auto = AutoCompile("slow", None)
    feed(auto, [1.0, 0.4, 0.4, 0.4], 10_000)
    assert feed(auto, [20.0, 0.42, 0.41, 0.43], 10_000)[-1] == "eager"
    assert not auto.decision.compile and auto.decision.compiled_step_s == 0.42


def test_a_short_run_never_tries_and_fp32_needs_a_longer_one():
    bf16 = AutoCompile("a", torch.bfloat16)
    assert feed(bf16, [1.0, 0.1, 0.1, 0.1], 1000) == [None, None, None, None]    # 100 s left < 600 s
    assert "too short" in bf16.decision.reason and not bf16.decision.compile
    fp32 = AutoCompile("b", None)
    assert feed(fp32, [1.0, 0.5, 0.5, 0.5], 1000)[-1] is None                    # 500 s left < 1200 s
    assert feed(AutoCompile("c", torch.bfloat16), [1.0, 0.5, 0.5, 0.5], 1000)[-1] is None  # 500 s < 600 s
    assert feed(AutoCompile("d", torch.bfloat16), [1.0, 0.5, 0.5, 0.5], 1400)[-1] == "compile"


def test_pays_weighs_the_saving_against_the_compile_time():
    assert pays(1.0, 0.5, 30.0, 61) and not pays(1.0, 0.5, 30.0, 59) and not pays(0.5, 0.6, 0.0, 1e9)


def test_the_kernel_cache_goes_under_lmforge_cache(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    autocompile.use_kernel_cache()
    import os
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "lmforge" / "inductor")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_a_compiled_run_resumes_exactly_like_an_eager_one(tmp_path):
    from conftest import lmforge, tiny_corpus_dir, tiny_recipe
    from test_train_resume import OVERRIDES, kill_after_step_20, losses_of_a_full_run, train_losses
    recipe = tiny_recipe(tmp_path, tiny_corpus_dir(tmp_path))
    base = tmp_path / "prepared"
    assert lmforge("prepare", str(base), "--recipe", str(recipe), *OVERRIDES, "--set", "train.compile=true").returncode == 0
    whole = losses_of_a_full_run(base, tmp_path / "whole")
    kill_after_step_20(base, tmp_path / "killed")
    out = lmforge("train", str(tmp_path / "killed"), "--resume")
    assert out.returncode == 0, out.stderr[-2000:]
    assert train_losses(tmp_path / "killed") == whole
    manifest = json.loads((tmp_path / "killed" / "manifest.json").read_text())
    assert manifest["stages"]["train"]["compile"]["source"] == "recipe"


def test_a_step_that_fails_to_compile_is_taken_again_eagerly(monkeypatch):
    """A machine without what Inductor needs: the trial's first compiled step raises; the run goes on."""
    from lmforge.models.llama import LlamaConfig
    from lmforge.models.registry import build_model
    from lmforge.train.batches import TokenBatches
    from lmforge.train.config import TrainConfig
    from lmforge.train.loop import Trainer
    import numpy as np

    def broken(module):
        def fail(*a, **k):
            raise RuntimeError("no C++ compiler found")
        return fail
    monkeypatch.setattr(torch, "compile", broken)
    monkeypatch.setitem(autocompile.MIN_TRIAL_SECONDS, None, 0.0)     # try at once, whatever is left
    tokens = np.random.default_rng(0).integers(0, 64, 5000).astype(np.uint16)
    model = build_model(LlamaConfig(preset="tiny", vocab_size=64, max_seq_len=16).resolved())
    cfg = TrainConfig(batch_size=2, seq_len=16, max_steps=8, eval_every=0, checkpoint_every=0, warmup_steps=0,
                      dtype="float32", compile="auto")
    records = []
    trainer = Trainer(model, cfg, TokenBatches(tokens, 16, 2, 0, 1), [], seed=0, log=records.append)
    trainer.validate = lambda: (1.0, {})
    state = trainer.fit()
    assert state.step == 8 and trainer.step_model is trainer.eager_step_model
    decision = [r for r in records if r["kind"] == "compile"][0]
    assert not decision["compile"] and "no C++ compiler found" in decision["reason"]
