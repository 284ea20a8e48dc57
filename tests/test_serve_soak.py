"""Soak (slow): 64 concurrent streaming clients for 60 s on 127.0.0.1, a quarter of the streams
left mid-way. The rest get no error, no sequence is left in the scheduler, the server's memory
stays within 10% of its size after warm-up, and it still answers. bench/serve_soak.py is the same
run with its figures printed."""

import sys
from pathlib import Path

import pytest

from lmforge.infer.tiny import make_tiny_run
from lmforge.models.llama import LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from serve_soak import soak  # noqa: E402


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_64_streaming_clients_for_a_minute_some_hanging_up(tmp_path):
    run = make_tiny_run(tmp_path / "run", LlamaConfig(preset="llama-mini"), vocab_size=4096)
    result = soak(run, clients=64, seconds=60, hang_up=0.25)
    assert result["errors"] == 0, result["first_errors"]
    assert result["requests"] > 100 and result["hung_up"] > 20
    assert result["left_in_scheduler"] == {"lmforge_batch_occupancy": 0.0, "lmforge_queue_length": 0.0}
    assert result["rss_growth_after_warm_up"] <= 1.10, result["rss_samples"]
    assert result["answers_after"] == 200
