"""Classification fine-tuning end to end: labelled TSV files, `lmforge run`, eval/classify.json,
`lmforge classify`, `/v1/classify`; a head-only run leaves the base weights untouched; mistakes
are one line naming file and line."""

import json
import random

from fastapi.testclient import TestClient
from safetensors.torch import load_file

from conftest import lmforge

WORDS = {"0": ["great", "wonderful", "superb", "lovely"], "1": ["awful", "dreadful", "boring", "dull"],
         "2": ["average", "ordinary", "passable", "middling"]}
FILLERS = ["the film", "this story", "the acting", "its plot", "the ending", "the music"]


def _labelled(path, n, seed):
    rng = random.Random(seed)
    rows = ["sentence\tlabel"]
    for _ in range(n):
        label = rng.choice("012")
        rows.append(f"{rng.choice(FILLERS)} is {rng.choice(WORDS[label])} and {rng.choice(FILLERS)} too\t{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _recipe(tmp_path, base, *, test=None, **train):
    settings = {"objective": '"classify"', "batch_size": 16, "max_steps": 60, "lr": 3e-3, "warmup_steps": 5,
                "eval_every": 20, "checkpoint_every": 20, "eval_batches": 4, "log_every": 10,
                "dtype": '"float32"', "threads": 1, **train}
    test = test or _labelled(tmp_path / "test.tsv", 90, 3)
    text = (f'name = "cls"\nseed = 3\n\n[data]\nlabelled = "{_labelled(tmp_path / "train.tsv", 600, 1)}"\n'
            f'labelled_val = "{_labelled(tmp_path / "dev.tsv", 60, 2)}"\nlabelled_test = "{test}"\n'
            'text_column = "sentence"\nlabel_names = { "0" = "positive", "1" = "negative", "2" = "neutral" }\n\n'
            f'[model]\ninit_from = "{base}"\n\n[train]\n' + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    path = tmp_path / "cls.toml"
    path.write_text(text)
    return path


def test_a_classifier_learns_three_labels_and_serves_them(tiny_run, tmp_path):
    out = lmforge("run", str(_recipe(tmp_path, tiny_run)), "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    run = tmp_path / "run"
    result = json.loads((run / "eval" / "classify.json").read_text())
    assert result["objective"] == "classify" and result["test_examples"] == 90
    assert result["accuracy"] >= 0.9 > result["majority_accuracy"]
    cm = result["confusion_matrix"]
    assert cm["labels"] == ["negative", "neutral", "positive"]          # names from the data, renamed
    assert sum(map(sum, cm["counts"])) == 90
    assert sum(cm["counts"][i][i] for i in range(3)) == round(result["accuracy"] * 90)
    assert 0 < result["accuracy_stderr"] < 0.05 or result["accuracy"] == 1.0
    assert "test accuracy" in (run / "model_card.md").read_text()

    cli = lmforge("classify", str(run), "--json", "--text", "its plot is dull and the music too",
                  "--text", "the film is lovely and the ending too")
    assert cli.returncode == 0, cli.stderr
    answers = [json.loads(line) for line in cli.stdout.splitlines()]
    assert [a["label"] for a in answers] == ["negative", "positive"]
    assert abs(sum(answers[0]["scores"].values()) - 1) < 1e-4

    export = lmforge("export", str(run), "--format", "gguf", "--out", str(tmp_path / "gguf"))
    assert export.returncode == 2 and "is a classifier" in export.stderr and not (tmp_path / "gguf").exists()

    from lmforge.serve.app import create_app
    with TestClient(create_app(run)) as client:
        for _ in range(200):
            if client.get("/health").status_code == 200:
                break
            import time
            time.sleep(0.05)
        r = client.post("/v1/classify", json={"input": ["the acting is middling and its plot too"]})
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["label"] == "neutral"
        bad = client.post("/v1/classify", json={"input": []})
        assert bad.status_code == 400 and "input" in bad.json()["error"]["message"]
        chat = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert chat.status_code == 400 and "classifier" in chat.json()["error"]["message"]


def test_head_only_training_leaves_the_base_weights_as_they_were(tiny_run, tmp_path):
    out = lmforge("run", str(_recipe(tmp_path, tiny_run, train_layers=0, max_steps=20)), "--out", str(tmp_path / "run"))
    assert out.returncode == 0, out.stderr[-2000:]
    tuned = load_file(str(tmp_path / "run" / "checkpoints" / "best" / "model.safetensors"))
    base = load_file(str(sorted((tiny_run / "checkpoints").glob("best"))[0] / "model.safetensors"))
    assert set(tuned) - set(base) == {"score.weight", "score.bias"}
    assert all(tuned[k].equal(base[k]) for k in base)


def test_classification_mistakes_are_one_line(tiny_run, tmp_path):
    unknown = tmp_path / "odd.tsv"
    unknown.write_text("sentence\tlabel\nthe film is great and it too\t0\nthe plot is meh and it too\t7\n")
    width = tmp_path / "width.tsv"
    width.write_text("sentence\tlabel\nthe film\tis\tgreat\n")
    for test, message in ((unknown, "odd.tsv:3: label '7' is not in the training labels"),
                          (width, "width.tsv:2: 3 fields where the header has 2")):
        out = lmforge("run", str(_recipe(tmp_path, tiny_run, test=test)), "--out", str(tmp_path / test.stem))
        assert out.returncode == 2 and message in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_every_family_classifies_a_padded_text_as_it_does_alone():
    import torch
    from lmforge.models.bert import BertConfig
    from lmforge.models.classifier import classify_logits
    from lmforge.models.llama import LlamaConfig
    from lmforge.models.registry import build_model
    from lmforge.models.rnn import RNNConfig
    torch.manual_seed(0)
    for cfg in (LlamaConfig(preset="tiny", vocab_size=50, max_seq_len=16),
                BertConfig(preset="bert-tiny", vocab_size=50, max_seq_len=16),
                RNNConfig(arch="lstm", preset="rnn-tiny", vocab_size=50)):
        model = build_model(replace_labels(cfg.resolved(), ["a", "b", "c"])).eval()
        text = torch.tensor([[5, 9, 11, 20, 7]])
        padded = torch.tensor([[5, 9, 11, 20, 7, 0, 0, 0], [3, 4, 0, 0, 0, 0, 0, 0]])
        mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]])
        alone = classify_logits(model, text, torch.ones_like(text))
        both = classify_logits(model, padded, mask)
        assert both.shape == (2, 3), cfg.arch
        assert torch.allclose(both[0], alone[0], atol=1e-5), cfg.arch      # padding is never read
        assert not torch.allclose(both[0], both[1], atol=1e-3), cfg.arch


def replace_labels(cfg, labels):
    from dataclasses import replace
    return replace(cfg, labels=labels)
