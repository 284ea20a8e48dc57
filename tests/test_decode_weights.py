"""`--dtype auto` for decoding: int8 weights only where measured faster at no loss cost, the
decision cached, float32 unmeasured where int8 cannot pay."""

import time

import pytest
from fastapi.testclient import TestClient

from lmforge.infer import weights_choice
from lmforge.infer.engine import Engine
from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig
from lmforge.models.llama.decode import _Int8Projection
from lmforge.serve.app import create_app

# 2 layers x 512: ~5.8M weights in matrices large enough for int8, above MIN_INT8_WEIGHTS
WIDE = LlamaConfig(preset="llama-mini", n_layer=2, d_model=512, n_head=8, max_seq_len=64)


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def wide_run(tmp_path_factory):
    return make_tiny_run(tmp_path_factory.mktemp("wide") / "run", WIDE)


def int8_in_use(engine: Engine) -> bool:
    return isinstance(engine.decoder.layers[0].qkv, _Int8Projection)


def fake_speeds(monkeypatch, float_tps: float, int8_tps: float) -> None:
    monkeypatch.setattr(weights_choice, "_decode_speed", lambda engine, prompt: int8_tps if engine.int8 else float_tps)


def test_small_models_stay_float32_without_measuring(tmp_path, monkeypatch):
    run = make_tiny_run(tmp_path / "small")
    monkeypatch.setattr(weights_choice, "measure", lambda *a: pytest.fail("measured a model int8 cannot speed up"))
    engine = Engine.from_run(run, dtype="auto")
    try:
        assert engine.weights_choice.weights == "float32" and engine.weights_choice.source == "rule"
        assert "would be int8" in engine.weights_choice.reason and not engine.int8
    finally:
        engine.close()


def test_the_measured_choice_is_the_weights_the_engine_decodes_with(wide_run):
    engine = Engine.from_run(wide_run, dtype="auto")
    try:
        choice = engine.weights_choice
        assert choice.source == "measured" and choice.float32_tokens_per_s > 0 and choice.int8_tokens_per_s > 0
        assert 0 < abs(choice.loss_cost) < 0.05          # rounding to int8 changes the model, a little
        assert int8_in_use(engine) == engine.int8 == (choice.weights == "int8")
        assert choice.weights == ("int8" if weights_choice.keeps_int8(
            choice.float32_tokens_per_s, choice.int8_tokens_per_s, choice.loss_cost) else "float32")
    finally:
        engine.close()


@pytest.mark.parametrize("float_tps, int8_tps, kept", [(100.0, 300.0, True), (100.0, 105.0, False)])
def test_int8_is_kept_only_when_it_is_enough_faster(wide_run, monkeypatch, float_tps, int8_tps, kept):
    fake_speeds(monkeypatch, float_tps, int8_tps)
    engine = Engine.from_run(wide_run, dtype="auto")
    exact = Engine.from_run(wide_run, dtype="float32" if not kept else "int8")
    try:
        assert engine.weights_choice.weights == ("int8" if kept else "float32")
        assert int8_in_use(engine) == kept
        prompt = list(range(5, 20))                      # the same tokens as an engine made that way
        assert (engine.generate(prompt, max_tokens=12, temperature=0.0).token_ids
                == exact.generate(prompt, max_tokens=12, temperature=0.0).token_ids)
    finally:
        engine.close()
        exact.close()


def test_int8_that_costs_loss_is_not_kept(wide_run, monkeypatch):
    fake_speeds(monkeypatch, 100.0, 300.0)
    monkeypatch.setattr(weights_choice, "_mean_loss", lambda engine, tokens: 2.2 if engine.int8 else 2.0)
    engine = Engine.from_run(wide_run, dtype="auto")
    try:
        assert engine.weights_choice.weights == "float32" and engine.weights_choice.loss_cost == pytest.approx(0.1)
        assert not int8_in_use(engine)
    finally:
        engine.close()


def test_the_decision_is_cached_until_the_weights_change(wide_run, monkeypatch):
    fake_speeds(monkeypatch, 100.0, 300.0)
    Engine.from_run(wide_run, dtype="auto").close()
    monkeypatch.setattr(weights_choice, "measure", lambda *a: pytest.fail("measured again"))
    engine = Engine.from_run(wide_run, dtype="auto")
    try:
        assert engine.weights_choice.source == "cache" and int8_in_use(engine)
    finally:
        engine.close()
    weights = next((wide_run / "checkpoints").glob("step-*/model.safetensors"))
    weights.write_bytes(weights.read_bytes())             # new weights file: the old decision does not hold
    with pytest.raises(BaseException, match="measured again"):
        Engine.from_run(wide_run, dtype="auto")


def test_the_server_says_which_weights_it_decodes_with(wide_run, monkeypatch):
    fake_speeds(monkeypatch, 100.0, 300.0)
    with TestClient(create_app(wide_run, engine_options={"dtype": "auto"})) as client:
        deadline = time.time() + 60
        while client.get("/health").status_code == 503 and time.time() < deadline:
            time.sleep(0.1)
        health = client.get("/health").json()
    assert health["decode_weights"]["weights"] == "int8" and health["decode_weights"]["int8_tokens_per_s"] == 300.0
