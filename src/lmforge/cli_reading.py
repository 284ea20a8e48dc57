"""The verbs for models that read text rather than write it: fill-mask (encoders), classify
(classifier runs) and embed (any run's sentence embeddings, a clip run's image embeddings too: the
ones /v1/embeddings serves)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmforge.errors import UserError


def _texts(args) -> list[str]:
    texts = list(args.text or [])
    if args.file:
        path = Path(args.file)
        if not path.is_file():
            raise UserError(f"{path}: no such file")
        texts += [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise UserError(f"{args.verb} needs --text TEXT (repeatable) or --file FILE (one text per line)")
    return texts


def cmd_fill_mask(args) -> None:
    from lmforge.eval.fill_mask import fill_mask
    from lmforge.models.io import find_weights, load_model
    from lmforge.models.registry import family_of
    from lmforge.tokenizer.load import find_tokenizer_dir, load_tokenizer
    path = Path(args.run)
    ckpt = find_weights(path)
    model = load_model(ckpt)
    if "masked_lm" not in family_of(model).objectives:
        raise UserError(f"{path} holds a model of arch '{model.cfg.arch}', which has no masked-LM head; "
                        f"fill-mask needs an encoder (model.arch = \"bert\")")
    tokenizer = load_tokenizer(find_tokenizer_dir(path, ckpt))
    for i, candidates in enumerate(fill_mask(model, tokenizer, args.text, args.top_k)):
        print(f"mask {i + 1}: " + "  ".join(f"{tok!r} {p:.3f}" for tok, p in candidates))


def cmd_classify(args) -> None:
    from lmforge.infer.classifier import Classifier
    texts = _texts(args)
    classifier = Classifier.from_run(args.run)
    for text, result in zip(texts, classifier.classify(texts)):
        if args.json:
            print(json.dumps({"text": text, **result}, ensure_ascii=False))
        else:
            print(f"{result['label']}\t{result['scores'][result['label']]:.3f}\t{text}")


def cmd_embed(args) -> None:
    """Unit-length embeddings of texts (and, for a clip run, images); by default their cosine
    similarities as a table."""
    import torch
    from lmforge.infer.embedder import Embedder
    images = [Path(f) for f in args.image or []]
    texts = _texts(args) if (args.text or args.file or not images) else []
    for path in images:
        if not path.is_file():
            raise UserError(f"{path}: no such image file")
    embedder = Embedder.from_run(args.run)
    parts, items = [], [("text", t) for t in texts] + [("image", str(p)) for p in images]
    if texts:
        parts.append(embedder.embed(embedder.encode(texts)))
    if images:
        parts.append(embedder.embed_images([p.read_bytes() for p in images], [str(p) for p in images]))
    vectors = torch.cat(parts)
    if args.json:
        for (kind, item), v in zip(items, vectors.tolist()):
            print(json.dumps({kind: item, "embedding": [round(x, 6) for x in v]}, ensure_ascii=False))
        return
    similarity = (vectors @ vectors.T).tolist()
    counted = f"{len(texts)} texts" + (f", {len(images)} images" if images else "")
    print(f"{counted}, {vectors.shape[1]} dimensions; cosine similarity:")
    for i, ((kind, item), row) in enumerate(zip(items, similarity), 1):
        print(f"{i:>3}  " + " ".join(f"{x:6.3f}" for x in row) + f"  {'[image] ' if kind == 'image' else ''}{item}")


def add_reading_verbs(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fill-mask", help="an encoder's most likely tokens for each <|mask|> in a text")
    p.add_argument("run")
    p.add_argument("--text", required=True, help="text with one or more <|mask|> (or [MASK]) tokens")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=cmd_fill_mask)

    for verb, func, what, json_help in (
            ("classify", cmd_classify, "a classifier run's label for each text",
             "one JSON object per text, with every label's probability"),
            ("embed", cmd_embed, "sentence embeddings of texts (mean-pooled for encoders), and their similarities",
             "one JSON object per text with its embedding")):
        p = sub.add_parser(verb, help=what)
        p.add_argument("run")
        p.add_argument("--text", action="append", help="a text (repeatable)")
        p.add_argument("--file", help="a file of texts, one per line")
        p.add_argument("--json", action="store_true", help=json_help)
        if verb == "embed":
            p.add_argument("--image", action="append", help="an image file, for a clip run (repeatable)")
        p.set_defaults(func=func)
