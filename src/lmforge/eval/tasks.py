"""Task definitions: small TOML or YAML files that point at local data and say how to prompt it.

    name = "piqa"
    kind = "multiple_choice"            # multiple_choice | perplexity | generation | minimal_pairs | retrieval
    [data]
    path = "../../shared/data/piqa/valid.jsonl"    # relative to this file
    labels = "../../shared/data/piqa/valid-labels.lst"
    [prompt]
    context = "Question: {goal}\\nAnswer:"
    choices = ["{sol1}", "{sol2}"]
    gold = "label"

A task name (no suffix) is looked up as <name>.toml / .yaml in $LMFORGE_TASKS,
./tasks and the tasks/ folder that ships beside the package source.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

import yaml

from lmforge.errors import UserError

KINDS = ("multiple_choice", "perplexity", "generation", "minimal_pairs", "retrieval")
FORMATS = ("jsonl", "json", "csv", "tsv", "lines", "text", "parallel")


@dataclass
class DataSpec:
    path: str = ""
    format: str = ""             # default: from the file suffix (.jsonl .json .csv .tsv; else lines)
    labels: str = ""             # a file with one label per line, added to each row as `label`
    target: str = ""             # parallel format: the aligned target-language file
    columns: list[str] = field(default_factory=list)   # names for a header-less csv/tsv
    separator: str = ""          # text format: split the file into documents on this string
    adapter: str = ""            # a named row transform (see adapters.py)
    fewshot_path: str = ""       # few-shot examples; default: other rows of the same file
    fewshot_labels: str = ""
    fewshot_target: str = ""
    language: str = ""           # retrieval: the language of `path`...
    aligned: dict[str, str] = field(default_factory=dict)   # ...and its translations, line by line


@dataclass
class PromptSpec:
    context: str = ""            # Python format string over the row's fields
    choices: list[str] = field(default_factory=list)   # one template per choice...
    choices_field: str = ""      # ...or a field holding the list of choices
    gold: str = ""               # field: choice index, or the text / letter of the right choice
    text: str = "{text}"         # perplexity: the document to score
    references: list[str] = field(default_factory=list)   # generation: reference templates...
    references_field: str = ""   # ...or a field holding a list of references
    target_delimiter: str = " "  # between the context and the answer
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0


@dataclass
class GenerationSpec:
    max_tokens: int = 64
    stop: list[str] = field(default_factory=lambda: ["\n"])
    temperature: float = 0.0


@dataclass
class MetricSpec:
    names: list[str] = field(default_factory=list)   # generation: bleu, chrf, rouge
    bleu_tokenize: str = ""      # sacrebleu tokenizer; "" = its default (13a); zh, ja-mecab, ...
    chrf_word_order: int = 0     # 2 = chrF++
    rouge_types: list[str] = field(default_factory=lambda: ["rouge1", "rouge2", "rougeL", "rougeLsum"])
    rouge_stemmer: bool = True
    rouge_tokenizer: str = "default"   # "unicode" keeps non-Latin scripts
    bootstrap: int = 1000        # resamples for 95% intervals; 0 or 1 = none
    center_embeddings: bool = False   # retrieval: subtract each language's mean embedding first


@dataclass
class Task:
    name: str = ""
    kind: str = "multiple_choice"
    description: str = ""
    data: DataSpec = field(default_factory=DataSpec)
    prompt: PromptSpec = field(default_factory=PromptSpec)
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    metrics: MetricSpec = field(default_factory=MetricSpec)
    base_dir: Path = Path(".")   # relative data paths resolve against the task file's folder

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / os.path.expanduser(relative)).resolve()


def _build(cls, raw: dict, where: str):
    """Construct a spec dataclass, rejecting unknown keys with the nearest valid one."""
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a table, got {type(raw).__name__}")
    names = [f.name for f in fields(cls) if f.name != "base_dir"]
    nested = {"data": DataSpec, "prompt": PromptSpec, "generation": GenerationSpec,
              "metrics": MetricSpec}
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (valid: {', '.join(names)})"
            raise UserError(f"{where}: unknown key {key!r}{hint}")
        kwargs[key] = _build(nested[key], value, f"{where} [{key}]") if cls is Task and key in nested \
            else value
    return cls(**kwargs)


def _validate(task: Task, where: str) -> None:
    if task.kind not in KINDS:
        raise UserError(f"{where}: kind {task.kind!r} is not one of {', '.join(KINDS)}")
    if not task.data.path:
        raise UserError(f"{where}: [data] path is required")
    if task.data.format and task.data.format not in FORMATS:
        raise UserError(f"{where}: format {task.data.format!r} is not one of {', '.join(FORMATS)}")
    p = task.prompt
    if task.kind == "multiple_choice" and not (p.context and (p.choices or p.choices_field) and p.gold):
        raise UserError(f"{where}: a multiple_choice task needs prompt context, choices "
                        "(or choices_field) and gold")
    if task.kind == "retrieval" and not (task.data.language and task.data.aligned):
        raise UserError(f"{where}: a retrieval task needs [data] language and aligned "
                        "(a table of language = file with the translations, line by line)")
    if task.kind == "generation":
        if not (p.context and (p.references or p.references_field)):
            raise UserError(f"{where}: a generation task needs prompt context and references "
                            "(or references_field)")
        unknown = set(task.metrics.names) - {"bleu", "chrf", "rouge"}
        if unknown or not task.metrics.names:
            raise UserError(f"{where}: [metrics] names must list some of bleu, chrf, rouge")


def task_search_path() -> list[Path]:
    dirs = [Path(d) for d in os.environ.get("LMFORGE_TASKS", "").split(os.pathsep) if d]
    return dirs + [Path.cwd() / "tasks", Path(__file__).resolve().parents[3] / "tasks"]


def find_task_file(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".toml", ".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"task file not found: {path}")
        return path
    for folder in task_search_path():
        for suffix in (".toml", ".yaml", ".yml"):
            if (folder / f"{name_or_path}{suffix}").is_file():
                return folder / f"{name_or_path}{suffix}"
    known = sorted({p.stem for d in task_search_path() if d.is_dir()
                    for p in d.iterdir() if p.suffix in (".toml", ".yaml", ".yml")})
    near = difflib.get_close_matches(name_or_path, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else (f"; known: {', '.join(known)}" if known else "")
    raise UserError(f"unknown task {name_or_path!r}{hint}")


def load_task(name_or_path: str) -> Task:
    path = find_task_file(name_or_path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            raw = tomllib.loads(text)
        else:
            raw = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not valid {path.suffix[1:].upper()}: {str(e).splitlines()[0]}") from None
    task = _build(Task, raw, str(path))
    task.name = task.name or path.stem
    task.base_dir = path.resolve().parent
    _validate(task, str(path))
    return task
