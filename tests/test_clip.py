"""The `clip` family end to end: the symmetric InfoNCE loss against a hand computation, the data
sources and their errors, held-out compositions kept out of training, a tiny recipe run with its
zero-shot and retrieval numbers beside chance, exact resume, and image-and-text embeddings from
the command line and from `POST /v1/embeddings` (the official `openai` client for text)."""

from __future__ import annotations

import base64
import io
import json
import math
import random

import httpx
import numpy as np
import openai
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import lmforge
from lmforge.models.io import load_model
from lmforge.serve.app import create_app
from lmforge.tokenizer.load import load_tokenizer
from lmforge.train.objectives.contrastive import info_nce
from lmforge.vision import scenes
from lmforge.vision.config import ImagesConfig
from lmforge.vision.images import resized, to_pixels
from lmforge.vision.sources import read_pairs
from lmforge.vision.task import assign_splits
from test_serve_api import serving
from test_serve_embeddings import _client, _wait_loaded
from test_train_resume import (OVERRIDES, assert_two_ranks_match, kill_after_step_20, losses_of_a_full_run,
                               train_losses)


def _recipe(root, images: str = 'source = "scenes"\nscenes = 500', train: str = "") -> str:
    path = root / "clip.toml"
    path.write_text(f"""name = "clip-test"
seed = 3
[data.images]
licence = "apache-2.0"
{images}
[tokenizer]
kind = "wordpiece"
vocab_size = 128
min_frequency = 1
[model]
preset = "clip-tiny"
n_layer = 1
vision_layers = 1
d_model = 64
embed_dim = 32
image_size = 16
dropout = 0.0
[train]
objective = "contrastive"
batch_size = 32
max_steps = 30
optimizer = "adamw"
lr = 2e-3
warmup_steps = 5
eval_every = 15
eval_batches = 2
checkpoint_every = 15
dtype = "float32"
{train}
[governance]
enabled = false
""")
    return str(path)


# --- the loss -----------------------------------------------------------------------------------

def _hand_info_nce(images, texts, scale, positives):
    """CLIP's loss written out: per row, -sum_j target_ij * log softmax_j(scale * <i, t_j>), both ways."""
    n = len(images)
    logits = [[scale * sum(a * b for a, b in zip(images[i], texts[j])) for j in range(n)] for i in range(n)]

    def one_way(rows):
        total = 0.0
        for i in range(n):
            log_z = math.log(sum(math.exp(x) for x in rows[i]))
            right = [j for j in range(n) if positives(i, j)]
            total += -sum(rows[i][j] - log_z for j in right) / len(right)
        return total / n

    columns = [[logits[j][i] for j in range(n)] for i in range(n)]
    return (one_way(logits) + one_way(columns)) / 2


def test_info_nce_equals_a_hand_computation_on_a_tiny_batch():
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    texts = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    scale = torch.tensor(7.5)
    loss, logits = info_nce(images, texts, scale)
    assert torch.allclose(logits, 7.5 * images @ texts.T)
    want = _hand_info_nce(images.tolist(), texts.tolist(), 7.5, lambda i, j: i == j)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    # pairs 0 and 2 share a caption: each is a right answer for the other
    groups = torch.tensor([5, 1, 5, 2])
    loss, _ = info_nce(images, texts, scale, groups)
    want = _hand_info_nce(images.tolist(), texts.tolist(), 7.5, lambda i, j: int(groups[i]) == int(groups[j]))
    assert float(loss) == pytest.approx(want, rel=1e-5)
    # matched pairs give a lower loss than shuffled ones
    assert float(info_nce(texts, texts, scale)[0]) < float(info_nce(texts, texts.roll(1, 0), scale)[0])


# --- the data -----------------------------------------------------------------------------------

def test_held_out_compositions_never_reach_the_training_or_validation_split():
    cfg = ImagesConfig(source="scenes", scenes=800)
    pairs, _ = read_pairs(cfg, seed=1)
    splits = assign_splits(pairs, cfg, seed=1)
    held = set(cfg.held_out)
    for pair, split in zip(pairs, splits):
        assert (split == "held_out") == (pair.label in held), (pair.caption, split)
        assert pair.label == f"{pair.attributes['colour']} {pair.attributes['shape']}"
        assert pair.attributes["colour"] in pair.caption and pair.attributes["shape"] in pair.caption
    assert {"train", "val", "test", "held_out"} == set(splits)
    # every colour and every shape of a held-out pair is still seen in training, just not together
    trained = [p.attributes for p, s in zip(pairs, splits) if s == "train"]
    for composition in held:
        colour, shape = composition.split()
        assert any(a["colour"] == colour for a in trained) and any(a["shape"] == shape for a in trained)


def test_digits_are_scikit_learns_with_spelled_out_captions():
    pairs, skipped = read_pairs(ImagesConfig(source="digits"), seed=0)
    assert len(pairs) == 1797 and skipped == 0
    assert {p.caption for p in pairs} == {f"a handwritten digit {d}" for d in
                                          ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                                           "nine")}
    first = np.asarray(pairs[0].image)
    assert first.shape == (8, 8, 3) and first.min() < 100 < first.max()      # dark ink on white


def _captions_folder(root, bad: str | None = None):
    images = root / "images"
    images.mkdir(parents=True)
    rng = random.Random(0)
    lines = ["filepath,title"]
    for i in range(60):
        image, caption, _ = scenes.render_scene(rng)
        image.save(images / f"{i}.png")
        lines.append(f"images/{i}.png,{caption}")
    if bad == "missing":
        lines.insert(4, "images/nowhere.png,a lost picture")
    if bad == "undecodable":
        (images / "broken.png").write_bytes(b"\x89PNG not really")
        lines.insert(4, "images/broken.png,a broken picture")
    (root / "captions.csv").write_text("\n".join(lines) + "\n")
    return root / "captions.csv"


@pytest.mark.parametrize("bad, message", [("missing", "no such image file"),
                                          ("undecodable", "cannot read the image")])
def test_a_bad_image_in_a_captions_file_names_file_and_line_and_writes_nothing(tmp_path, bad, message):
    captions = _captions_folder(tmp_path, bad)
    recipe = _recipe(tmp_path, f'source = "{captions}"')
    out = lmforge("prepare", str(tmp_path / "run"), "--recipe", recipe)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and f"{captions}:5:" in out.stderr and message in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "data" / "images.jsonl").exists()
    # skip_bad counts the row and goes on
    recipe = _recipe(tmp_path, f'source = "{captions}"\nskip_bad = true\nsplit = [0.6, 0.2, 0.2]')
    out = lmforge("prepare", str(tmp_path / "skipping"), "--recipe", recipe)
    assert out.returncode == 0, out.stderr
    assert "1 unreadable skipped" in out.stdout
    rows = (tmp_path / "skipping" / "data" / "images.jsonl").read_text().splitlines()
    assert len(rows) == 60 and json.loads(rows[0])["where"] == f"{captions}:2"


@pytest.mark.parametrize("images, message", [
    ('source = "scenes"\nheld_out = ["orange triangle"]', "data.images.held_out"),
    ('source = "scenes"\nsplit = [0.5, 0.5]', "split"),
    ('source = "nowhere.csv"', "nowhere.csv: no such file"),
])
def test_bad_image_settings_are_one_line_exit_2(tmp_path, images, message):
    out = lmforge("prepare", str(tmp_path / "run"), "--recipe", _recipe(tmp_path, images))
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


# --- a run --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip")
    out = lmforge("run", _recipe(root), "--out", str(root / "run"))
    assert out.returncode == 0, out.stderr[-3000:]
    return root / "run"


def test_a_clip_run_measures_zero_shot_and_retrieval_beside_chance(clip_run):
    result = json.loads((clip_run / "eval" / "clip.json").read_text())
    for split in ("test", "held_out"):
        r = result[split]
        assert 0 < r["zero_shot_chance"] < 1 and 0 <= r["zero_shot_accuracy"] <= 1
        for way in ("image_to_text", "text_to_image"):
            assert 0 < r[f"{way}_chance@1"] <= r[f"{way}_chance@5"] < 1
            assert 0 <= r[f"{way}_recall@1"] <= r[f"{way}_recall@5"] <= 1
    assert result["test"]["image_to_text_recall@5"] > result["test"]["image_to_text_chance@5"]
    assert (clip_run / "eval" / "clip_retrieval.png").read_bytes()[:4] == b"\x89PNG"
    rows = [json.loads(x) for x in (clip_run / "data" / "images.jsonl").read_text().splitlines()]
    trained = {r["label"] for r in rows if r["split"] == "train"}
    assert not trained & {"red triangle", "green circle", "blue square"}
    probes = [json.loads(x) for x in (clip_run / "metrics.jsonl").read_text().splitlines()
              if json.loads(x)["kind"] == "clip_eval"]
    assert [p["step"] for p in probes] == [15, 30]
    assert all("held_out_zero_shot_accuracy" in p and "val_image_to_text_recall@1" in p for p in probes)
    page = (clip_run / "report.html").read_text()
    assert "data:image/png;base64," in page and "held-out" in page.lower()
    card = (clip_run / "model_card.md").read_text()
    assert "zero-shot" in card.lower() and "chance" in card.lower()
    data_card = (clip_run / "data" / "data_card.md").read_text()
    held_rows = sum(r["split"] == "held_out" for r in rows)
    assert f"| held_out | {held_rows:,} |" in data_card and "red triangle" in data_card


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _image_by_hand(run, image: Image.Image) -> torch.Tensor:
    model = load_model(run).eval()
    with torch.no_grad():
        pixels = to_pixels(resized(image.convert("RGB"), model.cfg.image_size)[None])
        return F.normalize(model.image_projection(model.vision(pixels)).float(), dim=-1)[0]


def test_the_server_embeds_images_and_texts_in_one_space(clip_run):
    image, caption, _ = scenes.render_scene(random.Random(11))
    png = _png(image)
    with serving(create_app(clip_run, model_name="clip")) as base:
        _wait_loaded(base)
        texts = _client(base).embeddings.create(model="clip", input=[caption, "two blue squares"])
        assert [len(d.embedding) for d in texts.data] == [32, 32]
        r = httpx.post(base + "/v1/embeddings", timeout=30, json={"input": [
            {"image": base64.b64encode(png).decode()}, {"text": caption},
            {"image": "data:image/png;base64," + base64.b64encode(png).decode()}]})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        image_vector = torch.tensor(data[0]["embedding"])
        assert torch.allclose(image_vector, _image_by_hand(clip_run, image), atol=1e-5)
        assert torch.allclose(image_vector, torch.tensor(data[2]["embedding"]), atol=1e-6)
        assert data[1]["embedding"] == pytest.approx(texts.data[0].embedding, abs=1e-5)
        assert r.json()["usage"]["prompt_tokens"] == len(load_tokenizer(clip_run / "tokenizer").encode(caption).ids)
        for item, message in (({"image": "not base64!"}, "input[0].image: not base64"),
                              ({"image": base64.b64encode(b"GIF89a junk").decode()}, "input[0].image: not a readable"),
                              ({"picture": "x"}, "input")):
            bad = httpx.post(base + "/v1/embeddings", json={"input": [item]}, timeout=30)
            assert bad.status_code == 400 and message in bad.json()["error"]["message"], bad.text
        assert httpx.post(base + "/v1/embeddings", json={"input": "still serving"}, timeout=30).status_code == 200


def test_embed_on_the_command_line_reads_image_files(clip_run, tmp_path):
    image, caption, _ = scenes.render_scene(random.Random(5))
    (tmp_path / "scene.png").write_bytes(_png(image))
    out = lmforge("embed", str(clip_run), "--image", str(tmp_path / "scene.png"), "--text", caption, "--json")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(x) for x in out.stdout.splitlines()]
    assert [next(iter(x)) for x in lines] == ["text", "image"]
    assert torch.allclose(torch.tensor(lines[1]["embedding"]), _image_by_hand(clip_run, image), atol=1e-5)
    table = lmforge("embed", str(clip_run), "--image", str(tmp_path / "scene.png"), "--text", caption)
    assert table.returncode == 0 and "1 texts, 1 images, 32 dimensions; cosine similarity" in table.stdout
    (tmp_path / "junk.png").write_bytes(b"junk")
    bad = lmforge("embed", str(clip_run), "--image", str(tmp_path / "junk.png"))
    assert bad.returncode == 2 and f"{tmp_path / 'junk.png'}: not a readable image" in bad.stderr
    missing = lmforge("embed", str(clip_run), "--image", str(tmp_path / "none.png"))
    assert missing.returncode == 2 and "no such image file" in missing.stderr


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("clip-resume")
    base = root / "prepared"
    out = lmforge("prepare", str(base), "--recipe", _recipe(root), *OVERRIDES)
    assert out.returncode == 0, out.stderr
    return base, losses_of_a_full_run(base, root / "full")


def test_a_killed_clip_run_resumes_with_the_same_losses(prepared, tmp_path):
    base, uninterrupted = prepared
    kill_after_step_20(base, tmp_path / "killed")
    out = lmforge("train", str(tmp_path / "killed"), "--resume")
    assert out.returncode == 0, out.stderr
    assert "resuming at step 20" in out.stdout
    assert train_losses(tmp_path / "killed") == uninterrupted


@pytest.mark.slow     # its torchrun hung before ranks waited for each other at the end of training
def test_two_ranks_train_a_clip_run_as_one_process_does(prepared, tmp_path):
    # 4 pairs x 2 accumulation = 2 ranks x 4: each rank's micro-batch is one the single process makes,
    # and the negatives are the micro-batch's, so the losses agree up to float summation order
    base, uninterrupted = prepared
    assert_two_ranks_match(base, tmp_path / "ddp", uninterrupted)


def test_governance_on_an_image_text_run_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "clip.toml"
    _recipe(tmp_path)
    path.write_text(path.read_text().replace("enabled = false", "enabled = true"))
    out = lmforge("run", str(path), "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and "governance.enabled" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run").exists()


def test_what_a_clip_run_cannot_do_is_one_line_naming_what_it_can(clip_run):
    for verb, message in ((["generate", str(clip_run), "--prompt", "a"], "use `lmforge embed`"),
                          (["eval", str(clip_run), "--task", "piqa"], "task piqa scores next-token likelihoods"),
                          (["export", str(clip_run), "--format", "hf", "--out", str(clip_run / "x")], "clip"),
                          (["fill-mask", str(clip_run), "--text", "a <|mask|>"], "no masked-LM head"),
                          (["check", str(clip_run)], "its recipe turns governance off")):
        out = lmforge(*verb)
        assert out.returncode == 2 and out.stderr.count("\n") == 1 and message in out.stderr, (verb, out.stderr)
