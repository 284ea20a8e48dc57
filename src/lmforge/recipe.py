"""Recipes: one TOML file with typed sections, dotted overrides and clear validation.

Each section is a dataclass owned by the module that uses it (data, tokenizer,
model, train, eval). This file only knows how to turn TOML tables into those
dataclasses, checking every key and type, and how to write the fully resolved
recipe back out.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmforge.data.config import DataConfig
from lmforge.errors import UserError
from lmforge.eval.config import EvalConfig
from lmforge.governance.config import GovernanceConfig
from lmforge.models.config import ModelConfig
from lmforge.models.llama.config import LlamaConfig
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.train.config import TrainConfig


@dataclass
class Recipe:
    name: str = "run"
    seed: int = 1337
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=LlamaConfig)   # the family's dataclass, chosen by model.arch
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    governance: GovernanceConfig = field(default_factory=GovernanceConfig)

    def to_dict(self) -> dict:
        return _to_plain(self)

    def fingerprint(self) -> str:
        """A hash of the resolved recipe, used to refuse mixing recipes in one run directory. The
        [governance] section is left out: a new threshold re-checks the same model."""
        blob = json.dumps({k: v for k, v in self.to_dict().items() if k != "governance"}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# --------------------------------------------------------------------------- loading

def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file (or the defaults when `path` is None) and apply `key=value` overrides.

    Sections are checked on their own, then against each other (`check_across_sections`)."""
    raw: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise UserError(f"recipe not found: {path}")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise UserError(f"{path}: invalid TOML: {e}") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: recipe is not valid UTF-8") from None
    for item in overrides or []:
        _apply_override(raw, item)
    return recipe_from_dict(raw)


def recipe_from_dict(raw: dict) -> Recipe:
    return check_across_sections(from_dict(Recipe, raw, where="recipe"))


def check_across_sections(recipe: Recipe) -> Recipe:
    """What no section can check alone: the objective against the model family (an empty
    objective becomes the family's own, so the resolved recipe names it), governance against it."""
    from lmforge.models.registry import get_family
    family = get_family(recipe.model.arch)
    objective = recipe.train.objective or family.default_objective
    if objective not in family.objectives:
        raise UserError(f"train.objective = '{objective}' cannot train model.arch = '{family.arch}' "
                        f"(it trains: {', '.join(family.objectives)})")
    if objective == "contrastive" and recipe.governance.enabled:
        raise UserError("governance.enabled: the bias and privacy checks read text models, not image-text ones; "
                        "set governance.enabled = false for a contrastive run")
    recipe.train.objective = objective
    return recipe


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise UserError(f"override {item!r} must look like section.key=value")
    dotted, _, value_text = item.partition("=")
    keys = dotted.strip().split(".")
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise UserError(f"override {dotted!r}: {k!r} is not a section")
    node[keys[-1]] = _parse_value(value_text.strip())


def _parse_value(text: str) -> Any:
    """Parse an override value as a TOML value; fall back to a bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# what other tools (Hugging Face's TrainingArguments, nanoGPT) call our keys, for the "did you mean" hint
OTHER_NAMES = {"learning_rate": "lr", "num_train_epochs": "epochs", "max_iters": "max_steps",
               "warmup_iters": "warmup_steps", "block_size": "seq_len", "per_device_train_batch_size": "batch_size",
               "gradient_accumulation_steps": "grad_accum", "n_embd": "d_model", "num_layers": "n_layer",
               "num_heads": "n_head", "hidden_size": "d_model"}


def _suggestion(key: str, names: list[str]) -> str:
    known = {**{other: ours for other, ours in OTHER_NAMES.items() if ours in names}, **{n: n for n in names}}
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
    return f"; did you mean '{known[close[0]]}'?" if close else f"; valid keys: {', '.join(names)}"


def from_dict(cls, raw: Any, where: str):
    """Build dataclass `cls` from a plain dict, validating keys, types and ranges."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table, got {type(raw).__name__} {raw!r}")
    select = getattr(cls, "select", None)   # a section whose table picks its dataclass ([model] by arch)
    if select is not None:
        cls = select(raw)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            raise UserError(f"unknown key '{where}.{key}'{_suggestion(key, names)}".replace("recipe.", "", 1))
        kwargs[key] = _coerce(hints[key], value, f"{where}.{key}")
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            raise UserError(f"{_pretty(where)}: {e}") from None
    return obj


def _pretty(where: str) -> str:
    return where.replace("recipe.", "", 1) if where != "recipe" else "recipe"


def _coerce(tp, value: Any, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    label = _pretty(where)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except UserError as e:
                errors.append(str(e))
        raise UserError(errors[0] if errors else f"{label}: invalid value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise UserError(f"{label}: got {value!r}, allowed: {allowed}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise UserError(f"{label}: expected a list, got {type(value).__name__} {value!r}")
        inner = args[0] if args else Any
        return [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{label}: expected a table, got {type(value).__name__} {value!r}")
        inner = args[1] if len(args) == 2 else Any
        return {k: _coerce(inner, v, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{label}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{label}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(f"{label}: expected true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise UserError(f"{label}: expected a string, got {value!r}")
        return value
    return value


# --------------------------------------------------------------------------- writing

def _to_plain(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    return obj


def to_toml(recipe: Recipe) -> str:
    """Write the resolved recipe as TOML (None values are left out: TOML has no null)."""
    lines: list[str] = []
    plain = recipe.to_dict()
    scalars = {k: v for k, v in plain.items() if not isinstance(v, dict)}
    for k, v in scalars.items():
        lines.append(f"{k} = {_toml_value(v)}")
    for section, table in plain.items():
        if isinstance(table, dict):
            _emit_table(lines, section, table)
    return "\n".join(lines) + "\n"


def _emit_table(lines: list[str], name: str, table: dict) -> None:
    lines.append("")
    lines.append(f"[{name}]")
    nested = []
    for k, v in table.items():
        if v is None:
            continue
        if isinstance(v, dict):
            nested.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            nested.append((k, v))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in nested:
        if isinstance(v, dict):
            _emit_table(lines, f"{name}.{k}", v)
        else:
            for item in v:
                lines.append("")
                lines.append(f"[[{name}.{k}]]")
                for ik, iv in item.items():
                    if iv is not None:
                        lines.append(f"{ik} = {_toml_value(iv)}")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items() if x is not None) + "}"
    raise TypeError(f"cannot write {v!r} to TOML")
