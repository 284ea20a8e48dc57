"""Hugging Face folders, both ways.

    lmforge export RUN --format hf --out DIR    a folder `AutoModelFor*.from_pretrained` and
                                                `AutoTokenizer.from_pretrained` load, no remote code
    lmforge import HF_DIR --out RUN             a run directory from a Llama / Mistral / Qwen3 /
                                                GPT-2 / BERT folder with safetensors weights

The family spec (models/registry.py `to_hf`, `from_hf`) says which standard architecture holds
a model; this module moves the files: weights, config.json, generation_config.json, the
tokenizer with its chat template, and a model card with Hugging Face's YAML metadata.
Both write into a temporary folder renamed into place, so an interrupted run leaves nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from lmforge import atomic
from lmforge.errors import UserError
from lmforge.models.io import read_model_config, read_weights, save_weights
from lmforge.models.registry import get_family, hf_importable, hf_importer
from lmforge.export import exportable_checkpoint, refuse_existing
from lmforge.tokenizer.load import copy_tokenizer_files, find_tokenizer_dir, load_tokenizer, special_ids
from lmforge.tokenizer.specials import STOP_TOKENS

def _unique(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each shared tensor once, under its first name (safetensors stores no aliases; HF re-ties)."""
    seen: set[int] = set()
    out = {}
    for name, t in weights.items():
        if id(t) not in seen:
            seen.add(id(t))
            out[name] = t.detach().contiguous()
    return out


# ---------------------------------------------------------------------------- export

def export_hf(run: str | Path, out: str | Path, force: bool = False) -> Path:
    run, out = Path(run), Path(out)
    ckpt = exportable_checkpoint(run)
    cfg = read_model_config(ckpt)
    family = get_family(cfg.arch)
    if family.to_hf is None:
        raise UserError(f"a model of arch '{cfg.arch}' has no Hugging Face architecture to export to "
                        f"(bert and llama runs export)")
    refuse_existing(out, force)
    config, weights = family.to_hf(cfg, read_weights(ckpt, cfg))
    tok_dir = find_tokenizer_dir(run, ckpt)
    tok = load_tokenizer(tok_dir)
    ids = special_ids(tok)
    config.update(bos_token_id=ids["bos"], eos_token_id=ids["eos"], pad_token_id=ids["pad"])
    with atomic.atomic_dir(out) as tmp:
        save_file(_unique(weights), str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if family.generative:
            stops = [i for i in map(tok.token_to_id, STOP_TOKENS) if i is not None]
            (tmp / "generation_config.json").write_text(json.dumps(
                {"bos_token_id": ids["bos"], "eos_token_id": stops, "pad_token_id": ids["pad"],
                 "do_sample": False}, indent=2) + "\n")
        _copy_tokenizer(tok_dir, tmp, cfg.max_seq_len)
        (tmp / "README.md").write_text(model_card(run, config))
    return out


def _copy_tokenizer(src: Path, dst: Path, context: int) -> None:
    copy_tokenizer_files(src, dst)
    config_path = dst / "tokenizer_config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    config.pop("lmforge_kind", None)
    config.setdefault("tokenizer_class", "PreTrainedTokenizerFast")
    config["model_max_length"] = context
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")


def model_card(run: Path, config: dict) -> str:
    """README.md: Hugging Face's YAML metadata (with the run's real results in model-index),
    then the run's own model card."""
    recipe_file = run / "recipe.toml"
    licences, datasets, results = [], [], []
    if recipe_file.is_file():
        from lmforge.recipe import load_recipe
        recipe = load_recipe(recipe_file)
        licences = sorted({s.licence for s in recipe.data.sources if s.licence})
        datasets = [s.name or s.kind for s in recipe.data.sources]
    pretrain = run / "eval" / "pretrain.json"
    if pretrain.is_file():
        res = json.loads(pretrain.read_text())
        for key, name in (("bits_per_byte", "bits per byte"), ("token_perplexity", "token perplexity"),
                          ("mlm_accuracy", "masked-LM accuracy"), ("pseudo_perplexity", "pseudo-perplexity")):
            if key in res:
                results.append((key, name, res[key]))
    lines = ["---", f"license: {_yaml_licence(licences)}", "library_name: transformers",
             f"pipeline_tag: {'fill-mask' if config['model_type'] == 'bert' else 'text-generation'}",
             "tags:", "- lmforge", f"- {config['model_type']}"]
    if datasets:
        lines += ["datasets:"] + [f"- {d}" for d in datasets]
    if results:
        lines += ["model-index:", f"- name: {run.name}", "  results:", "  - task:",
                  "      type: " + ("fill-mask" if config["model_type"] == "bert" else "text-generation"),
                  "    dataset:", f"      name: {run.name} held-out validation split", "      type: custom",
                  "    metrics:"]
        for key, name, value in results:
            lines += [f"    - type: {key}", f"      name: {name}", f"      value: {value}"]
    lines.append("---")
    card = run / "model_card.md"
    body = card.read_text() if card.is_file() else f"# {run.name}\n\nExported from an lmforge run.\n"
    return "\n".join(lines) + "\n\n" + body


def _yaml_licence(licences: list[str]) -> str:
    known = {"PSF-2.0": "other", "Apache-2.0": "apache-2.0", "MIT": "mit", "CC-BY-4.0": "cc-by-4.0",
             "CC-BY-SA-4.0": "cc-by-sa-4.0", "CC0-1.0": "cc0-1.0"}
    mapped = sorted({known.get(name, "other") for name in licences})
    return mapped[0] if len(mapped) == 1 else "other"


# ---------------------------------------------------------------------------- import

def _read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        files = sorted({folder / f for f in json.loads(index.read_text())["weight_map"].values()})
    elif any(folder.glob("*.bin")) or any(folder.glob("*.pt")):
        raise UserError(f"{folder} holds only pickled weights (.bin/.pt), which lmforge never loads: "
                        f"convert them to safetensors first (save_pretrained(..., safe_serialization=True))")
    else:
        raise UserError(f"{folder}: no model.safetensors (or model.safetensors.index.json)")
    weights = {}
    for f in files:
        try:
            weights.update(load_file(str(f)))
        except (SafetensorError, OSError) as e:
            raise UserError(f"cannot read {f}: {e}") from None
    return weights


def import_hf(folder: str | Path, out: str | Path, force: bool = False) -> Path:
    """A run directory (recipe.toml, manifest.json, tokenizer/, checkpoints/best/) from an HF folder."""
    from lmforge.recipe import Recipe
    from lmforge.rundir import RunDir
    folder, out = Path(folder), Path(out)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise UserError(f"{folder}: no config.json (is it a Hugging Face model folder?)")
    config = json.loads(config_path.read_text())
    kind = config.get("model_type", "?")
    try:
        convert = hf_importer(kind)
    except KeyError:
        arch = (config.get("architectures") or [kind])[0]
        raise UserError(f"{folder}: architecture {arch} (model_type {kind!r}) is not supported; "
                        f"lmforge imports: {', '.join(hf_importable())}") from None
    if not (folder / "tokenizer.json").is_file():
        raise UserError(f"{folder}: no tokenizer.json (lmforge needs the fast tokenizer file)")
    refuse_existing(out, force)
    cfg, weights = convert(config, _read_hf_weights(folder))
    model = _checked_model(cfg, weights, folder)
    recipe = Recipe(name=folder.name, model=cfg)
    with atomic.atomic_dir(out) as tmp:
        run = RunDir.create(tmp, recipe)
        (run.checkpoints / "best").mkdir(parents=True)
        save_weights(model.state_dict(), cfg, run.checkpoints / "best")
        (run.checkpoints / "best" / "COMPLETE").write_text("ok\n")
        run.tokenizer.mkdir()
        copy_tokenizer_files(folder, run.tokenizer)
        manifest = run.manifest()
        manifest["imported_from"] = {"path": str(folder.resolve()), "model_type": kind,
                                     "architectures": config.get("architectures", [])}
        atomic.write_json(run.manifest_path, manifest)
    return out


def _checked_model(cfg, weights: dict[str, torch.Tensor], folder: Path):
    """The model built from `weights`, or one line saying how they do not fit the config."""
    from lmforge.models.registry import build_model
    try:
        cfg.validate()
    except ValueError as e:
        raise UserError(f"{folder}/config.json: {e}") from None
    with torch.device("meta"):
        expected = build_model(cfg).state_dict()
    missing = sorted(set(expected) - set(weights))
    if missing:
        raise UserError(f"{folder}: the weights lack {missing[0]} (and {len(missing) - 1} more) for this config")
    for name, t in expected.items():
        if tuple(weights[name].shape) != tuple(t.shape):
            raise UserError(f"{folder}: {name} has shape {tuple(weights[name].shape)}, config.json says "
                            f"{tuple(t.shape)}")
    model = build_model(cfg)
    model.load_state_dict({k: weights[k].float() for k in expected}, strict=True)
    return model.eval()
