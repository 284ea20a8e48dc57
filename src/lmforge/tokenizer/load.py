"""Load a saved tokenizer and look up its special-token ids."""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from lmforge.errors import UserError
from lmforge.tokenizer.specials import (ASSISTANT, BOS, END, EOS, MASK, PAD, SYSTEM, UNK,
                                        USER)


def tokenizer_file(path: Path) -> Path:
    """Accept a tokenizer folder or a tokenizer.json file."""
    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise UserError(f"no tokenizer.json at {path}: train one with `lmforge tokenizer` first")
    return file


# the files of a tokenizer folder, as lmforge writes them and Hugging Face reads them
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


def copy_tokenizer_files(src: Path, dst: Path) -> None:
    """The tokenizer files that `src` has, copied into the existing folder `dst`."""
    import shutil
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copyfile(Path(src) / name, Path(dst) / name)


def find_tokenizer_dir(path: Path, ckpt: Path | None = None) -> Path:
    """The one place that finds a run's tokenizer: run/tokenizer, found from the run directory
    or from one of its checkpoints (checkpoints/NAME/), or a tokenizer folder itself."""
    path = Path(path)
    candidates = [path / "tokenizer", path.parent.parent / "tokenizer", path]
    if ckpt is not None:
        candidates[1:1] = [ckpt / "tokenizer", ckpt.parent.parent / "tokenizer"]
    for candidate in candidates:
        if (candidate / "tokenizer.json").is_file():
            return candidate
    raise UserError(f"no tokenizer found for {path} (expected {path / 'tokenizer' / 'tokenizer.json'})")


def load_tokenizer(tokenizer_dir: Path) -> Tokenizer:
    file = tokenizer_file(tokenizer_dir)
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:      # the Rust side raises a plain Exception for a bad file
        raise UserError(f"{file}: not a valid tokenizer.json ({e})") from None


def special_ids(tok: Tokenizer) -> dict[str, int | None]:
    """Ids of bos, eos, pad, mask, system, user, assistant, end (and unk, None if absent)."""
    names = {"bos": BOS, "eos": EOS, "pad": PAD, "mask": MASK, "system": SYSTEM, "user": USER,
             "assistant": ASSISTANT, "end": END, "unk": UNK}
    return {key: tok.token_to_id(token) for key, token in names.items()}
