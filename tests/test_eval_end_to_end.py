"""The shipped tasks, end to end with a small --limit, on an lmforge run and an HF model directory."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import UserError
from lmforge.eval.harness import format_table, run_tasks
from test_eval_fixtures import hf_dir, need_shared_data, tiny_pair, tiny_run  # noqa: F401  (fixtures)


def test_multiple_choice_and_generation_tasks(tiny_run, hf_dir, tmp_path):
    for parts in (("piqa",), ("sst2",), ("dialogsum",), ("scitldr",), ("multi30k",)):
        need_shared_data(*parts)
    tasks = ["piqa", "sst2", "dialogsum", "scitldr", "multi30k-en-de"]
    results = run_tasks([tiny_run, hf_dir], tasks, limit=4, out_dir=tmp_path)
    assert results["models"] == ["tiny-run", "tiny-hf"]
    ours, theirs = results["results"]["tiny-run"], results["results"]["tiny-hf"]
    for task in ("piqa", "sst2"):   # same weights, same scores
        for metric in ("acc", "acc_norm"):
            assert ours[task]["metrics"][metric]["value"] == pytest.approx(
                theirs[task]["metrics"][metric]["value"])
            assert ours[task]["n"] == 4 and "stderr" in ours[task]["metrics"][metric]
    assert "macro_f1" in ours["sst2"]["metrics"] and "confusion_matrix" in ours["sst2"]
    assert set(ours["dialogsum"]["metrics"]) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    bleu = ours["multi30k-en-de"]["metrics"]["bleu"]
    assert 0 <= bleu["value"] <= 100 and bleu["signature"].startswith("nrefs:1|")
    assert bleu["ci95"][0] <= bleu["ci95"][1]
    written = json.loads((tmp_path / "tiny-run" / "piqa.json").read_text())
    assert written["metrics"] == ours["piqa"]["metrics"]
    samples = (tmp_path / "tiny-hf" / "multi30k-en-de.samples.jsonl").read_text().splitlines()
    assert len(samples) == 4 and json.loads(samples[0])["prompt"].startswith("English: ")
    table = format_table(results)
    assert "tiny-run" in table and "tiny-hf" in table and "sacrebleu" in table and "±" in table


def test_fewshot_and_run_eval_folder(tiny_run):
    need_shared_data("sst2")
    results = run_tasks([tiny_run], ["sst2"], limit=3, num_fewshot=2)
    result = results["results"]["tiny-run"]["sst2"]
    assert result["num_fewshot"] == 2
    prompt = json.loads((tiny_run / "eval" / "sst2.samples.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt.count("Answer:") == 3   # two solved examples, then the question


def test_chat_asks_each_prompt_as_a_user_message(tiny_run, tmp_path):
    need_shared_data("dialogsum")
    results = run_tasks([tiny_run], ["dialogsum"], limit=2, chat=True, out_dir=tmp_path)
    assert results["results"]["tiny-run"]["dialogsum"]["chat"] is True
    prompt = json.loads((tmp_path / "tiny-run" / "dialogsum.samples.jsonl").read_text().splitlines()[0])["prompt"]
    assert prompt.startswith("<|user|>\nDialogue:\n") and prompt.endswith("Summary:<|end|>\n<|assistant|>\n")


def test_perplexity_task(tiny_run, hf_dir, tmp_path):
    need_shared_data("ud_sentences")
    results = run_tasks([tiny_run, hf_dir], ["ud-en"], limit=5, out_dir=tmp_path)
    ours = results["results"]["tiny-run"]["ud-en"]
    theirs = results["results"]["tiny-hf"]["ud-en"]
    assert ours["metrics"]["bits_per_byte"]["value"] == pytest.approx(
        theirs["metrics"]["bits_per_byte"]["value"], abs=1e-4)
    counts = ours["counts"]
    import math
    assert ours["metrics"]["bits_per_byte"]["value"] == pytest.approx(
        -counts["loglikelihood"] / counts["bytes"] / math.log(2))


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="model not found"):
        run_tasks([tmp_path / "nope"], ["piqa"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither an lmforge run"):
        run_tasks([tmp_path / "empty"], ["piqa"])
