"""The `[data]` section of a recipe: where documents come from and how they are cleaned.

`steps` is the ordered list of cleaning steps; each step's options live in its own
table (`[data.quality]`, `[data.pii]`, ...) and only matter when the step is listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lmforge.vision.config import ImagesConfig

LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")

StepName = Literal["normalize", "langid", "quality", "exact_dedup", "minhash", "pii",
                   "decontaminate", "nlp"]

QUALITY_RULES = (
    "gopher_word_count", "gopher_mean_word_length", "gopher_symbol_ratio", "gopher_bullet_lines",
    "gopher_ellipsis_lines", "gopher_alpha_words", "gopher_stop_words",
    "gopher_dup_lines", "gopher_dup_paragraphs", "gopher_dup_line_chars", "gopher_dup_paragraph_chars",
    "gopher_top_ngram", "gopher_dup_ngram",
    "c4_lines", "c4_lorem_ipsum", "c4_curly_bracket", "c4_min_sentences",
    "fineweb_line_punct", "fineweb_short_lines", "fineweb_char_dup", "fineweb_new_lines",
)


@dataclass
class SourceConfig:
    kind: Literal["python_docs", "python_source", "files", "url", "hf"] = "python_docs"
    path: str = ""                   # file, directory or glob (files); URL (url); dataset name (hf)
    text_field: str = "text"         # field holding the text in json/jsonl/csv/parquet/hf
    licence: str = ""
    name: str = ""                   # label used in provenance and the data card
    split: str = "train"             # hf: dataset split
    max_pages: int = 50              # url: pages fetched at most
    max_depth: int = 2               # url: link hops from the start page
    delay_s: float = 1.0             # url: pause between requests to the site
    same_site: bool = True           # url: follow links to this host only
    exclude: list[str] = field(default_factory=list)   # python_*: module names to leave out (fnmatch
                                                       # patterns, "email.*"); files: path patterns
    language: str = ""               # the documents' language (ISO 639 code, "en"); "" = unknown, or
                                     # found by the langid step
    lines: bool = False              # files: every non-empty line is a document (sentence-per-line corpora)

    def label(self) -> str:
        return self.name or self.kind

    def validate(self) -> None:
        if self.kind in ("files", "url", "hf") and not self.path:
            raise ValueError(f"source kind '{self.kind}' needs a path")
        if self.max_pages < 1 or self.max_depth < 0 or self.delay_s < 0:
            raise ValueError("max_pages must be >= 1, max_depth >= 0 and delay_s >= 0")
        if self.language and not LANGUAGE_CODE.fullmatch(self.language):
            raise ValueError(f"source '{self.label()}': language {self.language!r} is not an ISO 639 code "
                             f"(two or three lower-case letters, optionally a script or region: 'en', 'zh-Hant')")
        if self.lines and self.kind != "files":
            raise ValueError(f"source '{self.label()}': lines = true applies to kind 'files' only")


@dataclass
class NormalizeConfig:
    form: Literal["NFC", "NFKC"] = "NFC"
    collapse_spaces: bool = True     # runs of spaces/tabs inside a line -> one space
    max_blank_lines: int = 2         # longer runs of empty lines are shortened


@dataclass
class LangIdConfig:
    allow: list[str] = field(default_factory=lambda: ["en"])   # empty = keep every language
    threshold: float = 0.5           # minimum probability of the detected language
    thresholds: dict[str, float] = field(default_factory=dict)  # per-language override

    def validate(self) -> None:
        for lang, t in {"default": self.threshold, **self.thresholds}.items():
            if not 0.0 <= t <= 1.0:
                raise ValueError(f"threshold for {lang}: got {t}, allowed 0..1")


@dataclass
class QualityConfig:
    """Gopher (Rae et al. 2021), C4 (Raffel et al. 2020) and FineWeb (Penedo et al. 2024) rules."""
    gopher: bool = True
    min_words: int = 50
    max_words: int = 100_000
    min_mean_word_length: float = 3.0
    max_mean_word_length: float = 10.0
    max_symbol_word_ratio: float = 0.1          # '#' and '...' per word
    max_bullet_lines_ratio: float = 0.9
    max_ellipsis_lines_ratio: float = 0.3
    min_alpha_words_ratio: float = 0.8          # share of words with at least one letter
    min_stop_words: int = 2
    gopher_repetition: bool = True
    dup_line_frac: float = 0.3
    dup_para_frac: float = 0.3
    dup_line_char_frac: float = 0.2
    dup_para_char_frac: float = 0.2
    top_ngram_char_frac: list[float] = field(default_factory=lambda: [0.20, 0.18, 0.16])  # n = 2, 3, 4
    dup_ngram_char_frac: list[float] = field(default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])  # n = 5..10
    c4: bool = False                 # off by default: built for web pages, it removes code and docs
    c4_min_words_per_line: int = 3
    c4_min_sentences: int = 5
    fineweb: bool = False
    fineweb_line_punct_thr: float = 0.12
    fineweb_short_line_thr: float = 0.67
    fineweb_short_line_length: int = 30
    fineweb_char_dup_ratio: float = 0.01
    fineweb_new_line_ratio: float = 0.3
    skip_rules: list[str] = field(default_factory=list)   # rule names to switch off one by one

    def validate(self) -> None:
        unknown = sorted(set(self.skip_rules) - set(QUALITY_RULES))
        if unknown:
            raise ValueError(f"skip_rules: unknown rule {unknown[0]!r}; rules: {', '.join(QUALITY_RULES)}")
        if len(self.top_ngram_char_frac) != 3 or len(self.dup_ngram_char_frac) != 6:
            raise ValueError("top_ngram_char_frac needs 3 values (n=2..4), dup_ngram_char_frac 6 (n=5..10)")


@dataclass
class ExactDedupConfig:
    lines: bool = False              # also drop lines already seen in earlier kept documents
    min_line_chars: int = 20         # shorter lines (blank, '}', 'return x') are never deduplicated


@dataclass
class MinHashConfig:
    ngram: int = 5                   # word shingles
    bands: int = 14
    rows: int = 8

    def validate(self) -> None:
        if self.ngram < 1 or self.bands < 1 or self.rows < 1:
            raise ValueError("ngram, bands and rows must be >= 1")


@dataclass
class PiiConfig:
    kinds: list[Literal["email", "phone", "ip", "credit_card", "iban", "secret"]] = field(
        default_factory=lambda: ["email", "phone", "ip", "credit_card", "iban", "secret"])
    max_hits: int = 0                # drop documents with more hits than this; 0 = never drop


@dataclass
class DecontaminateConfig:
    files: list[str] = field(default_factory=list)   # eval sets (txt/jsonl/json/csv/tsv)
    ngram: int = 13
    action: Literal["drop", "flag"] = "drop"

    def validate(self) -> None:
        if self.ngram < 3:
            raise ValueError(f"ngram: got {self.ngram}, must be >= 3")


@dataclass
class CanaryConfig:
    """[data.canaries]: random secrets put into the training split, to measure memorisation
    (governance: exposure, Carlini et al., "The Secret Sharer")."""
    repetitions: list[int] = field(default_factory=list)   # e.g. [1, 4, 16, 64]; empty = no canaries
    per_count: int = 2               # canaries per repetition count (and as many never-inserted controls)
    text: str = "my account number is {secret}"
    pattern: str = "NN-NNNN-NNNN"    # N: a random digit; other characters are kept

    def validate(self) -> None:
        if any(r < 1 for r in self.repetitions):
            raise ValueError(f"repetitions must be >= 1, got {self.repetitions}")
        if self.per_count < 1:
            raise ValueError(f"per_count must be >= 1, got {self.per_count}")
        if self.text.count("{secret}") != 1:
            raise ValueError(f"text must hold {{secret}} once, got {self.text!r}")
        if self.pattern.count("N") < 4:
            raise ValueError(f"pattern needs at least 4 digits (N), got {self.pattern!r}")
        if 2 * self.per_count * len(self.repetitions) > 10 ** self.pattern.count("N") // 2:
            raise ValueError(f"{2 * self.per_count * len(self.repetitions)} secrets do not fit the pattern "
                             f"{self.pattern!r}; use more digits")

    @property
    def space_bits(self) -> float:
        """log2 of the number of possible secrets."""
        return self.pattern.count("N") * 3.321928094887362


@dataclass
class NlpConfig:
    lowercase: bool = False
    remove_stop_words: bool = False
    stem: bool = False
    lemmatize: bool = False
    language: str = "en"


@dataclass
class DataConfig:
    sources: list[SourceConfig] = field(default_factory=lambda: [SourceConfig()])
    # fine-tuning: a chat JSONL, Alpaca JSON or prompt/completion JSONL file (data/conversations.py);
    # when set, the data stage reads it instead of cleaning `sources`, split in order into
    # train / test / validation by `conversation_split`
    conversations: str = ""
    conversation_split: list[float] = field(default_factory=lambda: [0.85, 0.1, 0.05])
    skip_identical_pairs: bool = False   # dpo: leave out (and count) pairs whose chosen equals rejected
    # data in no chat format: the user turn and the answer as format strings over each record's
    # fields ("Dialogue:\n{dialogue}\nSummary:" / "{summary}")
    prompt_template: str = ""
    completion_template: str = ""
    conversations_target: str = ""   # a text file parallel to `conversations` (records {source}, {target})
    # classify: labelled texts (.tsv/.csv/.jsonl, data/labelled.py); validation (model selection) and
    # test (the report) from their own files, or split from `labelled` by `conversation_split`
    labelled: str = ""
    labelled_val: str = ""
    labelled_test: str = ""
    text_column: str = "text"
    label_column: str = "label"
    label_names: dict[str, str] = field(default_factory=dict)   # display names: {"0" = "negative", ...}
    max_examples: int = 0            # classify: training examples kept at most (0 = all), in file order
    steps: list[StepName] = field(default_factory=lambda: ["normalize", "exact_dedup", "pii"])
    # multilingual corpora: training windows (and the tokenizer's text) sample language l with
    # p ∝ n_l^alpha (XLM's temperature sampling): 1 = in proportion to its tokens, 0 = every
    # language equally often, 0.3 (XLM-R) in between; documents without a language count as "und"
    language_alpha: float = 1.0
    min_chars: int = 1               # documents shorter than this (after cleaning) are removed
    max_docs: int = 0                # 0 = no limit (per source)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    langid: LangIdConfig = field(default_factory=LangIdConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    minhash: MinHashConfig = field(default_factory=MinHashConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    nlp: NlpConfig = field(default_factory=NlpConfig)
    canaries: CanaryConfig = field(default_factory=CanaryConfig)
    # train.objective = "contrastive": images with captions (vision/), read instead of `sources`
    images: ImagesConfig = field(default_factory=ImagesConfig)

    def validate(self) -> None:
        if not self.sources:
            raise ValueError("sources: at least one source is needed")
        labels = [src.label() for src in self.sources]
        for label in labels:
            if labels.count(label) > 1:
                raise ValueError(f"sources: two sources are labelled '{label}'; give each a distinct name")
        if len(set(self.steps)) != len(self.steps):
            raise ValueError(f"steps: a step is listed twice in {self.steps}")
        if len(self.conversation_split) != 3 or abs(sum(self.conversation_split) - 1) > 1e-6 or \
                min(self.conversation_split) < 0:
            raise ValueError(f"conversation_split: got {self.conversation_split}, expected three shares "
                             f"(train, test, validation) that sum to 1")
        if bool(self.prompt_template) != bool(self.completion_template):
            raise ValueError("prompt_template and completion_template: give both or neither")
        if self.conversations_target and not self.prompt_template:
            raise ValueError("conversations_target: parallel files need prompt_template and completion_template "
                             "(e.g. \"English: {source}\\nGerman:\" and \"{target}\")")
        if bool(self.labelled_val) != bool(self.labelled_test):
            raise ValueError("labelled_val and labelled_test: give both files or neither (then both are "
                             "split from `labelled`)")
        if not 0.0 <= self.language_alpha <= 1.0:
            raise ValueError(f"language_alpha: got {self.language_alpha}, allowed 0..1 (1 = proportional, "
                             f"0 = uniform over languages)")
        if self.min_chars < 0 or self.max_docs < 0 or self.max_examples < 0:
            raise ValueError("min_chars, max_docs and max_examples must be >= 0")
