"""Train a tokenizer (BPE, WordPiece, Unigram or character-level) with Hugging Face `tokenizers`
and save it so that `transformers.AutoTokenizer.from_pretrained(out_dir)` loads it.

Byte-level BPE and the character tokenizer decode back to exactly the input text.
WordPiece follows BERT (its [CLS]/[SEP]/[PAD]/[MASK] are our <|bos|>/<|eos|>/<|pad|>/<|mask|>)
and Unigram follows SentencePiece; both lose some spacing on decode.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

from lmforge.atomic import write_json, write_text
from lmforge.data.language_mix import UNDETERMINED, repeat_rates, resample
from lmforge.data.steps import LONE_SURROGATE
from lmforge.errors import UserError
from lmforge.progress import bar
from lmforge.tokenizer.config import TokenizerConfig
from lmforge.tokenizer.load import load_tokenizer
from lmforge.tokenizer.specials import BOS, CHAT_TEMPLATE, EOS, MASK, PAD, SPECIAL_TOKENS, UNK

# Pre-tokenisation regexes: tokens never cross these boundaries. GPT-4's (cl100k) splits
# contractions, words with one leading non-letter, numbers of up to 3 digits, punctuation runs,
# newlines and spaces; GPT-2's is the older, simpler one. With split_digits, numbers are split
# into single digits inside the same regex, which keeps the tokenizer one regex + byte-level,
# the shape tiktoken also runs (see fast.py).
GPT4_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
              r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def split_pattern(cfg: TokenizerConfig) -> str:
    pattern = GPT4_SPLIT if cfg.pretokenizer == "gpt4" else GPT2_SPLIT
    if cfg.split_digits:
        pattern = pattern.replace(r"\p{N}{1,3}", r"\p{N}").replace(r" ?\p{N}+", r" ?\p{N}")
    return pattern


def document_record(line: str | bytes, documents_path: Path, n: int) -> tuple[str, str]:
    """(text, language) of line `n` of a documents.jsonl; the language is "und" where unknown."""
    try:
        row = json.loads(line)
        text = row["text"]
    except (ValueError, KeyError, TypeError):    # ValueError: bad JSON or bad UTF-8
        raise UserError(f"{documents_path} line {n}: not a JSON object with a 'text' field") from None
    if not isinstance(text, str):
        raise UserError(f"{documents_path} line {n}: 'text' is not a string")
    if not text.isascii():   # JSON may spell a lone surrogate ("\\ud800"): U+FFFD, as the pipeline does
        text = LONE_SURROGATE.sub("\ufffd", text)
    return text, str(row.get("language") or UNDETERMINED)


def document_text(line: str | bytes, documents_path: Path, n: int) -> str:
    """The text of line `n` of a documents.jsonl."""
    return document_record(line, documents_path, n)[0]


def iter_records(documents_path: Path) -> Iterator[tuple[str, str]]:
    """(text, language) of every document of documents.jsonl, streamed."""
    documents_path = Path(documents_path)
    if not documents_path.is_file():
        raise UserError(f"documents not found: {documents_path} (run `lmforge data` first)")
    with open(documents_path, "rb") as f:
        for n, line in enumerate(f, 1):
            yield document_record(line, documents_path, n)


def iter_texts(documents_path: Path, max_bytes: int = 0, alpha: float = 1.0, seed: int = 0) -> Iterator[str]:
    """Texts of documents.jsonl, streamed; stops after max_bytes of text when max_bytes > 0.
    With alpha < 1 and several languages, each language's documents are repeated or thinned
    so the text's language mix is the one training batches sample (data/language_mix.py)."""
    records: Iterator[tuple[str, str]] = iter_records(documents_path)
    if alpha != 1.0:
        sizes: dict[str, int] = {}
        for text, lang in iter_records(documents_path):
            sizes[lang] = sizes.get(lang, 0) + len(text.encode("utf-8"))
        if len(sizes) > 1:
            records = resample(records, lambda record: record[1], repeat_rates(sizes, alpha), seed)
    seen = 0
    for text, _ in records:
        yield text
        seen += len(text.encode("utf-8")) if max_bytes else 0
        if max_bytes and seen >= max_bytes:
            return


def _bpe(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(split_pattern(cfg)), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                  special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    return tok, trainer


def _wordpiece(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    tok = Tokenizer(models.WordPiece(unk_token=UNK))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, clean_text=True)
    splits = [pre_tokenizers.BertPreTokenizer()]
    if cfg.split_digits:
        splits.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits)
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                        special_tokens=SPECIAL_TOKENS + [UNK], show_progress=False)
    return tok, trainer


def _unigram(cfg: TokenizerConfig) -> tuple[Tokenizer, trainers.Trainer]:
    tok = Tokenizer(models.Unigram())
    splits = [pre_tokenizers.Metaspace()]
    if cfg.split_digits:
        splits.append(pre_tokenizers.Digits(individual_digits=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence(splits)
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=cfg.vocab_size, special_tokens=SPECIAL_TOKENS + [UNK],
                                      unk_token=UNK, show_progress=False)
    return tok, trainer


def _char(texts: Iterator[str]) -> Tokenizer:
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + [UNK] + sorted(chars))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")   # every character
    tok.decoder = decoders.Fuse()                                                     # joined as they are
    return tok


def train_tokenizer(cfg: TokenizerConfig, documents_path: Path, out_dir: Path, *, language_alpha: float = 1.0,
                    seed: int = 0) -> Tokenizer:
    """Train (or copy `cfg.path`) and save tokenizer.json, tokenizer_config.json,
    special_tokens_map.json and chat_template.jinja in `out_dir`. language_alpha: the language
    mix of the training text (data.language_alpha), the same the training batches use."""
    out_dir = Path(out_dir)
    if cfg.path:
        tok = load_tokenizer(Path(cfg.path))
        tok.add_special_tokens(SPECIAL_TOKENS)     # only the missing ones are added
    else:
        texts = bar(iter_texts(documents_path, int(cfg.max_train_mb * 1e6), language_alpha, seed),
                    desc=f"tokenizer ({cfg.kind})", unit="doc")
        if cfg.kind == "char":
            tok = _char(texts)
        else:
            tok, trainer = {"bpe": _bpe, "wordpiece": _wordpiece, "unigram": _unigram}[cfg.kind](cfg)
            tok.train_from_iterator(texts, trainer=trainer)
        if cfg.kind == "wordpiece":
            # BERT's "[CLS] A [SEP]" and "[CLS] A [SEP] B [SEP]" with our tokens.
            tok.post_processor = processors.TemplateProcessing(
                single=f"{BOS} $A {EOS}", pair=f"{BOS} $A {EOS} $B:1 {EOS}:1",
                special_tokens=[(BOS, tok.token_to_id(BOS)), (EOS, tok.token_to_id(EOS))])
    if tok.get_vocab_size() <= len(SPECIAL_TOKENS) + 1:
        raise UserError(f"{documents_path}: no text to train the tokenizer on")
    save_tokenizer(tok, out_dir, cfg)
    return tok


def save_tokenizer(tok: Tokenizer, out_dir: Path, cfg: TokenizerConfig) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / "tokenizer.json", tok.to_str(pretty=True))
    specials = {"bos_token": BOS, "eos_token": EOS, "pad_token": PAD, "mask_token": MASK,
                "additional_special_tokens": SPECIAL_TOKENS[4:]}
    if tok.token_to_id(UNK) is not None:
        specials["unk_token"] = UNK
    if cfg.kind == "wordpiece":
        specials.update(cls_token=BOS, sep_token=EOS)
    write_json(out_dir / "special_tokens_map.json", specials)
    write_json(out_dir / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", **specials,
        "model_max_length": cfg.model_max_length, "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE, "lmforge_kind": cfg.kind})
    write_text(out_dir / "chat_template.jinja", CHAT_TEMPLATE)
