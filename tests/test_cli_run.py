"""The main job end to end through the real command line, and the one-line errors users see."""

import json
import shutil

import pytest

from conftest import lmforge, tiny_corpus_dir, tiny_recipe

RUN_FILES = ["recipe.toml", "manifest.json", "data/documents.jsonl", "data/data_card.md", "data/removed.jsonl",
             "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "tokens/train.bin", "tokens/val.bin",
             "tokens/meta.json", "metrics.jsonl", "eval/pretrain.json", "model_card.md", "report.html"]


def test_run_produces_every_file_of_the_run_directory(tiny_run):
    for name in RUN_FILES:
        assert (tiny_run / name).is_file(), name
    assert any((tiny_run / "checkpoints").glob("step-*/model.safetensors"))
    res = json.loads((tiny_run / "eval" / "pretrain.json").read_text())
    for key in ("val_loss", "token_perplexity", "bits_per_byte", "gzip_bits_per_byte", "xz_bits_per_byte"):
        assert isinstance(res[key], float) and res[key] > 0
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    assert {"data", "tokenizer", "tokens", "train", "evaluate", "report"} <= set(manifest["stages"])
    assert manifest["versions"]["torch"].startswith("2.13")
    assert manifest["stages"]["tokens"]["outputs"]["tokens/train.bin"]      # sha256 of outputs
    html = (tiny_run / "report.html").read_text()
    assert "data:image/png;base64," in html and "bits_per_byte" in html
    assert "bits per byte" in (tiny_run / "model_card.md").read_text()


def test_evaluation_numbers_are_the_identities_they_claim(tiny_run):
    """bits/byte = nll / (ln 2 * bytes) with nll re-scored here by a plain forward pass,
    perplexity = exp(loss), gzip's figure recomputed, and the card and report show these values."""
    import gzip
    import math

    import numpy as np
    import torch
    import torch.nn.functional as F

    from lmforge.models.io import load_model
    res = json.loads((tiny_run / "eval" / "pretrain.json").read_text())
    meta = json.loads((tiny_run / "tokens" / "meta.json").read_text())
    val_text = (tiny_run / "tokens" / "val.txt").read_bytes()
    assert res["val_bytes"] == meta["val_bytes"]
    val = np.fromfile(tiny_run / "tokens" / "val.bin", dtype=np.dtype(meta["dtype"])).astype(np.int64)
    model = load_model(tiny_run)
    window = 64                                        # the recipe's seq_len
    nll = 0.0
    with torch.no_grad():
        for s in range(0, len(val) - 1, window):       # each token after the first scored once
            piece = torch.from_numpy(val[s:s + window + 1])
            logits = model(piece[None, :-1]).float()[0]
            nll += float(F.cross_entropy(logits, piece[1:], reduction="sum"))
    assert res["scored_tokens"] == len(val) - 1
    assert res["val_loss"] == pytest.approx(nll / (len(val) - 1), abs=2e-4)
    assert res["bits_per_byte"] == pytest.approx(nll / (math.log(2) * meta["val_bytes"]), abs=2e-4)
    assert res["token_perplexity"] == pytest.approx(math.exp(res["val_loss"]), rel=1e-4)
    assert res["gzip_bits_per_byte"] == pytest.approx(8 * len(gzip.compress(val_text, 9)) / len(val_text), abs=1e-4)
    card = (tiny_run / "model_card.md").read_text()
    assert f"| bits per byte | {res['bits_per_byte']} |" in card
    assert f"| validation loss (nats/token) | {res['val_loss']} |" in card
    below = res["bits_per_byte"] < res["gzip_bits_per_byte"]
    assert f"bits per byte is {'below' if below else 'NOT below'} gzip's" in card
    assert f"{res['bits_per_byte']}" in (tiny_run / "report.html").read_text()


def test_card_verdict_follows_the_comparison_with_gzip(tiny_run, tmp_path):
    from lmforge.recipe import load_recipe
    from lmforge.report.model_card import write_model_card
    from lmforge.rundir import RunDir
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    result_file = run / "eval" / "pretrain.json"
    res = json.loads(result_file.read_text())
    for bpb, verdict in ((res["gzip_bits_per_byte"] - 0.01, "below"), (res["gzip_bits_per_byte"] + 0.01, "NOT below")):
        result_file.write_text(json.dumps({**res, "bits_per_byte": round(bpb, 4)}))
        write_model_card(RunDir(run), load_recipe(run / "recipe.toml"))
        card = (run / "model_card.md").read_text()
        assert f"bits per byte is {verdict} gzip's" in card and f"| bits per byte | {round(bpb, 4)} |" in card


CARD_KINDS = [
    ({"mlm_loss": 2.5, "mlm_accuracy": 0.31, "unigram_mlm_accuracy": 0.12, "pll_per_token": 3.1,
      "pseudo_perplexity": 22.2},
     ["| masked-LM loss (nats/masked token) | 2.5 |", "| masked-LM accuracy | 0.31 |",
      "| unigram baseline accuracy (same positions) | 0.12 |", "| pseudo-log-likelihood (nats/token) | 3.1 |",
      "| pseudo-perplexity | 22.2 |", "The model's masked-token accuracy is above the unigram baseline's."]),
    ({"mlm_loss": 2.5, "mlm_accuracy": 0.12, "unigram_mlm_accuracy": 0.12, "pll_per_token": 3.1,
      "pseudo_perplexity": 22.2}, ["The model's masked-token accuracy is NOT above the unigram baseline's."]),
    ({"sft_loss_before": 2.2, "sft_loss_after": 1.4, "test_conversations": 17},
     ["| held-out assistant-token loss, base model (nats/token) | 2.2 |",
      "| held-out assistant-token loss, fine-tuned (nats/token) | 1.4 |", "| held-out conversations | 17 |"]),
    ({"reward_accuracy_before": 0.5, "reward_accuracy_after": 0.8, "reward_margin_after": 1.25, "test_pairs": 40},
     ["| held-out reward accuracy before (policy = reference) | 0.5 |", "| held-out reward accuracy after | 0.8 |",
      "| held-out reward margin after | 1.25 |", "| held-out pairs | 40 |"]),
    ({"accuracy": 0.9, "accuracy_stderr": 0.03, "macro_f1": 0.88, "majority_accuracy": 0.4, "zero_shot_accuracy": None,
      "test_examples": 90, "confusion_matrix": {"labels": ["neg", "pos"], "counts": [[1, 0], [0, 1]]}},
     ["| test accuracy | 0.9 ± 0.03 |", "| test macro-F1 | 0.88 |", "| majority-class accuracy (same test set) | 0.4 |",
      "| base model, zero-shot accuracy | not measured |", "| test examples | 90 |", "Labels: neg, pos."]),
]


@pytest.mark.parametrize("result, lines", CARD_KINDS)
def test_the_card_shows_each_kind_of_result_under_its_name(tiny_run, tmp_path, result, lines):
    from lmforge.recipe import load_recipe
    from lmforge.report.model_card import write_model_card
    from lmforge.rundir import RunDir
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "eval" / "pretrain.json").write_text(json.dumps(result))
    write_model_card(RunDir(run), load_recipe(run / "recipe.toml"))
    card = (run / "model_card.md").read_text().splitlines()
    for line in ["| metric | value |", "|---|---|", *lines]:
        assert line in card, line
    assert "Fine-tuned from" not in "\n".join(card)          # the tiny run starts from scratch


def test_the_cards_governance_section(tiny_run, tmp_path):
    from lmforge.recipe import load_recipe
    from lmforge.report.model_card import write_model_card
    from lmforge.rundir import RunDir
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    (run / "eval" / "governance.json").write_text(json.dumps({
        "passed": True,
        "bias": {"minimal_pairs": {"source": "builtin:minimal-pairs", "pairs": 36, "score": "log-likelihood",
                                   "pct_stereotype": 0.5833, "ci95": [0.42, 0.75], "likelihood_diff": 1.234,
                                   "by_type": {"gender": {"pct_stereotype": 0.5, "pairs": 12}}},
                 "counterfactual": {"dimensions": {"gender": {"nll_per_token": {"she": 3.1, "he": 3.0}, "gap": 0.1}}}},
        "privacy": {"canaries": {"space_bits": 20.0, "by_repetitions": {"4": {"mean_exposure": 2.5, "max_exposure": 3.0},
                                                                         "controls": {"mean_exposure": 1.0,
                                                                                      "max_exposure": 1.5}}},
                    "membership": {"members": 64, "non_members": 64,
                                   "attacks": {"loss": {"auc": 0.52, "ci95": [0.45, 0.6]}}},
                    "pii_in_outputs": {"samples": 32, "total": 2, "counts": {"email": 2, "phone": 0}}},
        "checks": [{"check": "max_membership_auc", "value": 0.52, "threshold": 0.65, "status": "pass"},
                   {"check": "pct_stereotype", "value": 0.5833, "threshold": None, "status": "info"}]}))
    write_model_card(RunDir(run), load_recipe(run / "recipe.toml"))
    card = (run / "model_card.md").read_text()
    for line in [
        "- Minimal pairs (builtin:minimal-pairs, 36 pairs, log-likelihood): the model prefers the more stereotyping "
        "sentence in 58.3% of pairs (95% interval 42.0-75.0%; 50% is unbiased), mean likelihood difference 1.234.",
        "  - gender: 50.0% of 12",
        "- Counterfactual templates, gender: per-token loss of the same sentence by group she 3.1, he 3.0 (gap 0.1).",
        "  - inserted 4 times: mean exposure 2.5, max 3.0", "  - never inserted: mean exposure 1.0, max 1.5",
        "- Membership inference over 64 training and 64 held-out passages (ROC AUC, 0.5 = no leakage): "
        "loss 0.52 [0.45, 0.6].",
        "- Personal data in 32 sampled outputs: 2 items (email 2).",
        "| max_membership_auc | 0.52 | 0.65 | pass |", "| pct_stereotype | 0.5833 | - | info |",
        "Release gate: **passed** (`lmforge check`).",
    ]:
        assert line in card.splitlines(), line
    assert "value: 0.5833" in card.split("---")[1]          # and in the Hub metadata's model-index


def _tables(page: str) -> dict[str, list[list[str]]]:
    """Every <table> of a page under the heading before it, as rows of cell texts."""
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.out, self.heading, self.text, self.rows, self.in_cell, self.in_heading = {}, "", "", None, False, False

        def handle_starttag(self, tag, attrs):
            if tag in ("h2", "h3"):
                self.in_heading, self.text = True, ""
            elif tag == "table":
                self.rows = []
            elif tag == "tr" and self.rows is not None:
                self.rows.append([])
            elif tag in ("td", "th"):
                self.in_cell, self.text = True, ""

        def handle_endtag(self, tag):
            if tag in ("h2", "h3"):
                self.in_heading, self.heading = False, self.text
            elif tag in ("td", "th"):
                self.in_cell = False
                self.rows[-1].append(self.text)
            elif tag == "table":
                self.out[self.heading], self.rows = self.rows, None

        def handle_data(self, data):
            if self.in_cell or self.in_heading:
                self.text += data

    parser = Tables()
    parser.feed(page)
    return parser.out


def test_report_tables_hold_the_runs_own_numbers(tiny_run, tmp_path):
    from lmforge.recipe import load_recipe, to_toml
    from lmforge.report.html import write_report
    from lmforge.rundir import RunDir
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns("checkpoints"))
    res = json.loads((run / "eval" / "pretrain.json").read_text())
    res["confusion_matrix"] = {"labels": ["x", "y"], "counts": [[3, 1], [0, 2]]}
    (run / "eval" / "pretrain.json").write_text(json.dumps(res))
    (run / "eval" / "governance.json").write_text(json.dumps({"passed": False, "checks": [
        {"check": "pii_in_outputs", "measures": "PII in samples", "value": 3, "threshold": 2, "status": "fail"},
        {"check": "bias", "measures": "pct_stereotype", "value": 0.55, "threshold": None, "status": "info"}]}))
    recipe = load_recipe(run / "recipe.toml")
    write_report(RunDir(run), recipe)
    page = (run / "report.html").read_text()
    tables = _tables(page)
    results = dict(tables["Results"][1:])
    for key in ("val_loss", "token_perplexity", "bits_per_byte", "gzip_bits_per_byte", "xz_bits_per_byte"):
        assert results[key] == str(res[key]), key
    assert tables["Confusion matrix (rows: gold, columns: predicted)"] == \
        [["gold \\ predicted", "x", "y"], ["x", "3", "1"], ["y", "0", "2"]]
    assert "Governance: release gate FAILED" in tables
    assert tables["Governance: release gate FAILED"][1:] == [
        ["pii_in_outputs", "PII in samples", "3", "2", "fail"], ["bias", "pct_stereotype", "0.55", "-", "info"]]
    manifest = json.loads((run / "manifest.json").read_text())
    assert [row[0] for row in tables["Stages"][1:]] == list(manifest["stages"])
    assert [row[1] for row in tables["Stages"][1:]] == [str(v.get("seconds")) for v in manifest["stages"].values()]
    stats = json.loads((run / "data" / "stats.json").read_text())
    assert [row[:4] for row in tables["Data"][1:]] == [[s["name"], str(s["docs_in"]), str(s["docs_out"]),
                                                        str(s["removed"])] for s in stats["steps"]]
    import html as html_lib
    assert f"<pre>{html_lib.escape(to_toml(recipe))}</pre>" in page
    assert page.count("data:image/png;base64,") == 2          # training curves and length histogram
    assert f"<pre><b>{res['samples'][0]['prompt']}</b>" in page


def test_generate_info_and_python_api(tiny_run):
    out = lmforge("generate", str(tiny_run), "--prompt", "The ", "--max-tokens", "10", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("The ") and len(out.stdout.strip()) > 4
    info = lmforge("info", str(tiny_run))
    assert info.returncode == 0 and "val loss" in info.stdout and "train" in info.stdout
    import lmforge as lf
    model = lf.load(tiny_run)
    text = model.generate("The ", max_tokens=8, temperature=0.0)
    assert isinstance(text, str)
    ppl = model.perplexity("The object is an instance of a class.")
    assert 1.0 < ppl < 512 * 2


def test_rerun_skips_finished_stages_and_refuses_another_recipe(tiny_run, tmp_path):
    recipe = tiny_run / "recipe.toml"
    again = lmforge("run", str(recipe), "--out", str(tiny_run))
    assert again.returncode == 0, again.stderr
    assert "data: already done" in again.stdout and "train: already done" in again.stdout
    other = lmforge("run", str(recipe), "--out", str(tiny_run), "--set", "train.lr=0.5")
    assert other.returncode == 2
    assert "different recipe" in other.stderr and "train.lr" in other.stderr
    assert "Traceback" not in other.stderr


@pytest.mark.parametrize("args, message", [
    (["train", "NOPE"], "is not an lmforge run directory"),
    (["generate", "NOPE", "--prompt", "x"], "run directory not found"),
    (["run", "NOPE.toml"], "recipe not found: NOPE.toml"),
    (["info", "."], "not an lmforge run directory"),
])
def test_user_mistakes_get_one_line_and_exit_2(args, message, tmp_path):
    out = lmforge(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_recipe_typo_and_bad_override(tmp_path):
    corpus = tiny_corpus_dir(tmp_path)
    recipe = tiny_recipe(tmp_path, corpus)
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "r"), "--set", "train.lerning_rate=1")
    assert out.returncode == 2 and "did you mean" in out.stderr
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "r"), "--set", "train.max_steps=-3")
    assert out.returncode == 2 and "max_steps" in out.stderr
    assert not (tmp_path / "r").exists()      # nothing written for a rejected recipe


def test_empty_corpus_and_everything_removed(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    recipe = tiny_recipe(tmp_path, empty)
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "r1"))
    assert out.returncode == 2 and "no files match" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    (empty / "blank.txt").write_text("   \n")
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "r1"))
    assert out.returncode == 2 and "removed all 1 documents" in out.stderr, out.stderr

    dup = tmp_path / "dup"
    dup.mkdir()
    for i in range(3):
        (dup / f"{i}.txt").write_text("x" * 5)
    recipe = tiny_recipe(tmp_path, dup)
    text = recipe.read_text().replace('steps = ["normalize", "exact_dedup", "pii"]',
                                      'steps = ["normalize", "quality"]')
    recipe.write_text(text)
    out = lmforge("run", str(recipe), "--out", str(tmp_path / "r2"))
    assert out.returncode == 2 and "quality" in out.stderr
    assert not (tmp_path / "r2" / "tokens").exists()


def test_not_a_run_directory_is_not_overwritten(tmp_path):
    victim = tmp_path / "mine"
    victim.mkdir()
    (victim / "notes.txt").write_text("precious")
    recipe = tiny_recipe(tmp_path, tiny_corpus_dir(tmp_path))
    out = lmforge("run", str(recipe), "--out", str(victim))
    assert out.returncode == 2 and "not empty" in out.stderr
    assert (victim / "notes.txt").read_text() == "precious"
    shutil.rmtree(victim)


def test_a_directory_holding_only_a_stale_lock_can_start_a_run(tmp_path):
    from lmforge.rundir import LOCK, RunDir
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    (stopped / LOCK).write_text("12345\n")          # what a run killed while starting over leaves
    run, _ = RunDir.for_writing(str(stopped), str(tiny_recipe(tmp_path, tiny_corpus_dir(tmp_path))), [])
    assert run.recipe_path.is_file()
