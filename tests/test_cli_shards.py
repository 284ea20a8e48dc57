"""Sharded data preparation from the command line: N array tasks, then one merge."""

import json

from conftest import lmforge, tiny_corpus_dir, tiny_recipe


def test_sharded_prepare_matches_unsharded(tmp_path):
    recipe = tiny_recipe(tmp_path, tiny_corpus_dir(tmp_path))
    sharded, whole = tmp_path / "sharded", tmp_path / "whole"
    for i in range(2):
        out = lmforge("prepare", str(sharded), "--recipe", str(recipe), "--shard", f"{i}/2", "--workers", "1")
        assert out.returncode == 0, out.stderr
    early = lmforge("prepare", str(tmp_path / "other"), "--recipe", str(recipe), "--merge")
    assert early.returncode == 2 and "holds no shards" in early.stderr
    out = lmforge("prepare", str(sharded), "--merge", "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert lmforge("prepare", str(whole), "--recipe", str(recipe), "--workers", "1").returncode == 0

    def docs(run):
        return sorted(json.loads(l)["sha256"] for l in (run / "data" / "documents.jsonl").read_text().splitlines())

    assert docs(sharded) == docs(whole)
    assert (sharded / "tokens" / "train.bin").stat().st_size > 0
    bad = lmforge("prepare", str(sharded), "--shard", "3/2")
    assert bad.returncode == 2 and "0 <= I < N" in bad.stderr
