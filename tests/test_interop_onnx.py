"""ONNX export, proven against ONNX Runtime: a prompt and then token after token through the
graph's key/value inputs give lmforge's logits."""

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from conftest import lmforge
from lmforge.errors import UserError
from lmforge.export.onnx import export_onnx
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.bert import BertConfig
from lmforge.models.io import load_model
from lmforge.models.llama import LlamaConfig

CFG = LlamaConfig(preset="llama-mini", n_layer=2, d_model=64, n_head=4, n_kv_head=2, max_seq_len=64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    run = make_tiny_run(root / "run", CFG)
    return run, export_onnx(run, root / "onnx", quantize="int8")


def _decode(session, config: dict, ids: np.ndarray, chunks: list[int]) -> np.ndarray:
    """Feed `ids` in chunks, each step's presents as the next step's pasts; all logits, joined."""
    shape = (ids.shape[0], config["kv_heads"], 0, config["head_dim"])
    past = [np.zeros(shape, np.float32) for _ in range(2 * config["n_layer"])]
    logits, start = [], 0
    for n in chunks:
        out = session.run(None, dict(zip(config["inputs"], [ids[:, start:start + n], *past])))
        logits.append(out[0])
        past, start = out[1:], start + n
    return np.concatenate(logits, axis=1)


def test_onnx_runtime_decodes_incrementally_with_lmforge_logits(exported):
    run, out = exported
    config = json.loads((out / "onnx_config.json").read_text())
    session = ort.InferenceSession(str(out / "model.onnx"))
    assert [i.name for i in session.get_inputs()] == config["inputs"]
    ids = torch.randint(0, CFG.vocab_size or 500, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = load_model(run)(ids).numpy()
    got = _decode(session, config, ids.numpy(), [7, 1, 1, 3])       # a prompt, two steps, a chunk
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_int8_weights_stay_close_to_the_float_model(exported):
    run, out = exported
    config = json.loads((out / "onnx_config.json").read_text())
    ids = np.random.default_rng(0).integers(0, 500, (1, 16))
    full = _decode(ort.InferenceSession(str(out / "model.onnx")), config, ids, [16])
    int8 = _decode(ort.InferenceSession(str(out / "model.int8.onnx")), config, ids, [16])
    assert (out / "model.int8.onnx").stat().st_size < 0.6 * (out / "model.onnx").stat().st_size
    assert np.abs(int8 - full).mean() < 0.05 * np.abs(full).mean() + 1e-3
    assert not np.array_equal(int8, full)


def test_what_the_graph_cannot_hold_is_refused(tmp_path):
    bert = make_tiny_run(tmp_path / "bert", BertConfig(preset="bert-tiny"))
    out = lmforge("export", str(bert), "--format", "onnx", "--out", str(tmp_path / "x"))
    assert out.returncode == 2 and "arch is 'bert'" in out.stderr and not (tmp_path / "x").exists()
    ngram = make_tiny_run(tmp_path / "ngram", LlamaConfig(preset="tiny", ngram_orders=[2], ngram_buckets=97, ngram_dim=8))
    with pytest.raises(UserError, match="ngram_orders"):
        export_onnx(ngram, tmp_path / "y")
