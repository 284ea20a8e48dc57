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
