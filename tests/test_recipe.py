"""Recipes: typed sections, overrides, and errors that tell the user what to fix."""

import tomllib

import pytest

from lmforge.errors import UserError
from lmforge.recipe import load_recipe, recipe_from_dict, to_toml


def write(tmp_path, text):
    p = tmp_path / "r.toml"
    p.write_text(text)
    return p


def test_unknown_key_names_the_nearest_valid_one(tmp_path):
    with pytest.raises(UserError, match=r"^unknown key 'train.learning_rat'; did you mean 'lr'\?$"):
        load_recipe(write(tmp_path, "[train]\nlearning_rat = 0.1\n"))      # near Hugging Face's name for it
    with pytest.raises(UserError, match=r"^unknown key 'train.block_size'; did you mean 'seq_len'\?$"):
        load_recipe(write(tmp_path, "[train]\nblock_size = 64\n"))         # nanoGPT's name
    with pytest.raises(UserError, match=r"^unknown key 'train.warmup_step'; did you mean 'warmup_steps'\?$"):
        load_recipe(write(tmp_path, "[train]\nwarmup_step = 1\n"))
    with pytest.raises(UserError, match=r"^unknown key 'train.zzz'; valid keys: .*\blr\b"):
        load_recipe(write(tmp_path, "[train]\nzzz = 1\n"))
    with pytest.raises(UserError, match=r"'model.n_layers'; did you mean 'n_layer'"):
        load_recipe(write(tmp_path, "[model]\nn_layers = 3\n"))


def test_wrong_type_says_key_value_and_expectation(tmp_path):
    with pytest.raises(UserError, match=r"train.max_steps: expected an integer, got 'many'"):
        load_recipe(write(tmp_path, '[train]\nmax_steps = "many"\n'))


def test_out_of_range_and_literal_choices(tmp_path):
    with pytest.raises(UserError, match=r"train: batch_size: got 0, must be >= 1"):
        load_recipe(write(tmp_path, "[train]\nbatch_size = 0\n"))
    with pytest.raises(UserError, match=r"model.mlp: got 'tanh', allowed: 'swiglu', 'relu2', 'gelu'"):
        load_recipe(write(tmp_path, '[model]\nmlp = "tanh"\n'))


def test_overrides_are_typed_and_win(tmp_path):
    r = load_recipe(write(tmp_path, "[train]\nlr = 0.1\n"),
                    ["train.lr=3e-3", "model.qk_norm=true", "name=mine", "train.schedule=wsd"])
    assert r.train.lr == 0.003 and r.model.qk_norm is True and r.name == "mine"
    assert r.train.schedule == "wsd"
    with pytest.raises(UserError, match="section.key=value"):
        load_recipe(None, ["train.lr"])


def test_resolved_recipe_round_trips_with_every_default(tmp_path):
    r = load_recipe(write(tmp_path, '[model]\npreset = "tiny"\n'), ["train.max_steps=12"])
    text = to_toml(r)
    raw = tomllib.loads(text)
    assert raw["train"]["warmup_steps"] == r.train.warmup_steps     # defaults are written out
    again = recipe_from_dict(raw)
    assert again.fingerprint() == r.fingerprint()


def test_missing_and_invalid_recipe_files(tmp_path):
    with pytest.raises(UserError, match="recipe not found"):
        load_recipe(tmp_path / "nope.toml")
    with pytest.raises(UserError, match="invalid TOML"):
        load_recipe(write(tmp_path, "[train\n"))


def test_presets_apply_under_explicit_keys():
    r = recipe_from_dict({"model": {"preset": "gpt2-char", "n_layer": 2}})
    cfg = r.model.resolved()
    assert cfg.n_layer == 2 and cfg.positions == "learned" and cfg.tie_embeddings
    with pytest.raises(UserError, match="preset: got 'huge'"):
        recipe_from_dict({"model": {"preset": "huge"}})
