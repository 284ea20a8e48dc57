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


def _render(run: Path) -> tuple[str, str]:
    recipe = load_recipe(run / "recipe.toml")
    write_model_card(RunDir(run), recipe)
    write_report(RunDir(run), recipe)
    page = (run / "report.html").read_text().replace(str(run), "RUN")
    return (run / "model_card.md").read_text(), re.sub(r'src="data:image/png;base64,[^"]+"',
                                                       'src="data:image/png;base64,..."', page)


def test_the_card_and_report_of_a_run_that_has_not_run_yet(tmp_path):
    """Only the recipe and a manifest without stages or versions: every number says it is missing."""
    import json
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(GOLDEN / "run" / "recipe.toml", run / "recipe.toml")
    (run / "manifest.json").write_text(json.dumps({"name": "tiny", "stages": {}}))
    card, page = _render(run)
    assert card == (GOLDEN / "model_card_empty.md").read_text()
    assert page == (GOLDEN / "report_empty.html").read_text()


def _everything(run: Path) -> None:
    """The golden run with every optional section a card or report can have."""
    import json
    from lmforge.models.io import config_to_json
    recipe = (run / "recipe.toml").read_text()
    recipe = recipe.replace('licence = "PSF-2.0"', 'licence = ""').replace(
        'steps = ["normalize", "exact_dedup", "pii"]', 'steps = ["normalize", "langid", "exact_dedup", "pii"]')
    (run / "recipe.toml").write_text(recipe)
    step = run / "checkpoints" / "step-40"
    step.mkdir(parents=True)
    from lmforge.recipe import load_recipe as load
    cfg = load(run / "recipe.toml").model.resolved()
    (step / "model_config.json").write_text(config_to_json(cfg.__class__(**{**cfg.__dict__, "n_layer": 3})))
    manifest = json.loads((run / "manifest.json").read_text())
    manifest["stages"]["tokens"]["canaries"] = 2
    (run / "manifest.json").write_text(json.dumps(manifest))
    result = json.loads((run / "eval" / "pretrain.json").read_text())
    result["samples"] = [{"prompt": "Q: <x>?", "base": "no idea", "tuned": "A & B"}]
    result["languages"] = {"language_alpha": 0.3, "bits_per_byte_spread": 0.25, "by_language": {
        "de": {"bytes_per_token": 3.5, "train_share": 0.2, "sampled_share": 0.4, "val_tokens": 10, "val_bytes": 35,
               "bits_per_byte": 3.5},
        "en": {"bytes_per_token": 4.0, "train_share": 0.8, "sampled_share": 0.6, "val_tokens": 30, "val_bytes": 120,
               "bits_per_byte": 3.25},
        "ja": {"bytes_per_token": 3.0, "train_share": 0.0, "sampled_share": 0.0, "val_tokens": 0, "val_bytes": 0}}}
    (run / "eval" / "pretrain.json").write_text(json.dumps(result))
    (run / "eval" / "multi30k-retrieval.json").write_text(json.dumps({
        "task": "multi30k-retrieval", "n": 1000, "metrics": {"en->de recall@1": {"value": 0.015},
                                                            "chance recall@1": {"value": 0.001}}}))
    governance = json.loads((run / "eval" / "governance.json").read_text())
    governance["passed"] = True
    governance["privacy"] = {}
    governance["bias"]["counterfactual"] = {"dimensions": {"gender": {"flip_rate": 0.25, "accuracy": {"she": 0.5}}}}
    (run / "eval" / "governance.json").write_text(json.dumps(governance))


def test_the_card_and_report_with_every_optional_section(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(GOLDEN / "run", run)
    _everything(run)
    card, page = _render(run)
    assert card == (GOLDEN / "model_card_full.md").read_text()
    assert page == (GOLDEN / "report_full.html").read_text()


def test_lineage_licence_and_fine_tuning_lines(tmp_path):
    from dataclasses import replace
    from lmforge.recipe import to_toml
    from lmforge.report.model_card import _front_matter, _lineage, _results
    golden = load_recipe(GOLDEN / "run" / "recipe.toml")
    base_dir, child_dir = tmp_path / "base", tmp_path / "child"
    base_dir.mkdir()
    child = replace(golden, name="child", model=replace(golden.model, init_from=str(base_dir)),
                    train=replace(golden.train, objective="classify", adapter="lora"),
                    data=replace(golden.data, labelled="reviews.tsv", steps=["langid"],
                                 langid=replace(golden.data.langid, allow=["en", "de"]),
                                 sources=[replace(s, licence="MIT") for s in golden.data.sources]))
    # the base names the child as its own base: the chain must stop, not loop
    base = replace(golden, name="base", data=replace(golden.data, conversations="chats.jsonl"),
                   train=replace(golden.train, objective="sft"), model=replace(golden.model, init_from=str(child_dir)))
    (base_dir / "recipe.toml").write_text(to_toml(base))
    child_dir.mkdir()
    (child_dir / "recipe.toml").write_text(to_toml(child))
    assert _lineage(child) == ["1. base: sft on conversations chats.jsonl",
                               "2. child: classify on labelled reviews.tsv (adapter: lora)"]
    (base_dir / "recipe.toml").write_text("not toml [")
    assert _lineage(child) == ["1. child: classify on labelled reviews.tsv (adapter: lora)"]   # unreadable base
    front = "\n".join(_front_matter(child, {"accuracy": 0.75}, {}, ["MIT"]))
    assert "license: mit\n" in front and "license_name" not in front
    assert "language:\n- de\n- en\n" in front and "pipeline_tag: text-classification" in front
    assert "- type: accuracy\n" in front and "value: 0.75" in front
    two = "\n".join(_front_matter(child, {}, {}, ["MIT", "CC-BY-4.0"]))
    assert "license: other\nlicense_name: MIT, CC-BY-4.0\n" in two and "model-index" not in two
    classified = _results({"accuracy": 0.75, "accuracy_stderr": 0.02, "macro_f1": 0.7, "majority_accuracy": 0.5,
                           "zero_shot_accuracy": 0.55, "test_examples": 100,
                           "confusion_matrix": {"labels": ["neg", "pos"]}}, child)
    assert "| base model, zero-shot accuracy | 0.55 |" in classified
    assert classified[-1] == f"Fine-tuned for classification from {base_dir}."
    sft = _results({"sft_loss_before": 2.0, "sft_loss_after": 1.5, "test_conversations": 9}, child)
    assert sft[-1] == f"Fine-tuned from {base_dir}."
    dpo = _results({"reward_accuracy_before": 0.5, "reward_accuracy_after": 0.7, "reward_margin_after": 0.3,
                    "test_pairs": 9}, child)
    assert dpo[-1] == f"Preference-tuned (DPO) from {base_dir}."
    scratch = replace(child, model=replace(child.model, init_from=""))
    assert _results({"reward_accuracy_before": 0.5, "reward_accuracy_after": 0.7, "reward_margin_after": 0.3,
                     "test_pairs": 9}, scratch)[-1] == ""
    assert "| base model, zero-shot accuracy | not measured |" in _results(
        {"accuracy": 0.75, "accuracy_stderr": 0.02, "macro_f1": 0.7, "majority_accuracy": 0.5, "test_examples": 100,
         "confusion_matrix": {"labels": ["neg", "pos"]}}, scratch)
    tie = _results({"val_loss": 1.0, "token_perplexity": 2.7, "bits_per_byte": 3.0, "gzip_bits_per_byte": 3.0,
                    "xz_bits_per_byte": 2.9}, scratch)
    assert tie[-1] == "The model's bits per byte is NOT below gzip's on the same text."


KINDS = {
    "masked_lm": {"mlm_loss": 6.5, "mlm_accuracy": 0.11, "unigram_mlm_accuracy": 0.07, "pll_per_token": 6.3,
                  "pseudo_perplexity": 552.8},
    "sft": {"sft_loss_before": 2.1, "sft_loss_after": 1.4, "test_conversations": 110},
    "dpo": {"reward_accuracy_before": 0.5, "reward_accuracy_after": 0.8, "reward_margin_after": 0.6,
            "chosen_logprob_after": -40.5, "rejected_logprob_after": -52.25, "test_pairs": 55},
    "classify": {"accuracy": 0.8, "accuracy_stderr": 0.01, "macro_f1": 0.79, "majority_accuracy": 0.51,
                 "zero_shot_accuracy": 0.6, "test_examples": 872},
}


def test_the_reports_results_table_lists_each_kinds_numbers(tmp_path):
    import json
    for kind, numbers in KINDS.items():
        run = tmp_path / kind
        shutil.copytree(GOLDEN / "run", run)
        extra = {"confusion_matrix": {"labels": ["neg", "pos"], "counts": [[3, 1], [0, 4]]}} if kind == "classify" else {}
        (run / "eval" / "pretrain.json").write_text(json.dumps({"arch": "llama", "objective": kind, **numbers, **extra}))
        _, page = _render(run)
        results = page.split("<h2>Results</h2>")[1].split("</table>")[0]
        assert results.count("<tr><td>") == len(numbers), kind
        for key, value in numbers.items():
            assert f"<tr><td>{key}</td><td>{value}</td></tr>" in results, (kind, key)
