"""Cross-lingual retrieval: does a sentence's embedding find its translation among all the others?

Each sentence of the query language is embedded (infer/embedder.py: unit vectors), compared by
cosine similarity with every sentence of the other language, and counted as found at k when its
own translation ranks among the k most similar. Recall@k is the share found, both directions
(en->de and de->en); chance is k / N. A task may centre each language's embeddings on their
mean first (`[metrics] center_embeddings`). mBERT-style encoders show cross-lingual alignment this
way without ever seeing a translation pair (Pires et al. 2019, "How multilingual is mBERT?").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KS = (1, 5)


def recall_at_k(queries: torch.Tensor, candidates: torch.Tensor, ks=KS) -> dict[int, float]:
    """Row i of `queries` should retrieve row i of `candidates` (both unit vectors)."""
    similarity = queries @ candidates.T
    own = similarity.diagonal().unsqueeze(1)
    rank = (similarity > own).sum(dim=1)          # how many candidates beat the right one
    return {k: float((rank < k).float().mean()) for k in ks}


def centered(vectors: torch.Tensor) -> torch.Tensor:
    """Unit vectors after subtracting their mean: what the language has in common is taken away,
    what the sentence says is left (Libovický et al. 2020 found this alone makes mBERT's
    sentence embeddings far more language-neutral)."""
    return F.normalize(vectors - vectors.mean(dim=0, keepdim=True), dim=-1)


def evaluate_retrieval(embed, texts: dict[str, list[str]], source: str, center: bool = False) -> dict:
    """embed(list of texts) -> (N, d) unit vectors; texts: aligned sentences per language.
    Recall@1 and @5 from `source` to every other language and back, with chance beside;
    center: each language's embeddings centred on their mean first."""
    vectors = {lang: embed(lines) for lang, lines in texts.items()}
    if center:
        vectors = {lang: centered(v) for lang, v in vectors.items()}
    n = len(texts[source])
    metrics, samples = {}, []
    for lang in texts:
        if lang == source:
            continue
        for a, b in ((source, lang), (lang, source)):
            for k, value in recall_at_k(vectors[a], vectors[b]).items():
                metrics[f"{a}->{b} recall@{k}"] = {"value": round(value, 4)}
        nearest = (vectors[source] @ vectors[lang].T).argmax(dim=1).tolist()
        samples += [{"query": texts[source][i], "language": lang, "nearest": texts[lang][j],
                     "translation": texts[lang][i], "found": i == j} for i, j in enumerate(nearest[:20])]
    for k in KS:
        metrics[f"chance recall@{k}"] = {"value": round(min(k, n) / n, 4)}
    return {"metrics": metrics, "samples": samples, "n": n}
