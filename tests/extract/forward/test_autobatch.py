"""``--batch-size auto`` (extract.forward.autobatch): the memory budget on a CPU, backing off on CUDA
out-of-memory, and the size a run records."""

from __future__ import annotations

import pytest
import torch
import zarr


@pytest.fixture(scope="module")
def tiny_loaded(tiny_llama_dir):
    from extract.model.load import load_model

    return load_model(str(tiny_llama_dir), dtype="float32", device="cpu")


def _auto(lm, n_seqs, lengths=(40, 300, 120), **kw):
    from extract.forward.autobatch import auto_batch_size
    from extract.model.arch import resolve

    seqs = [[5] * lengths[i % len(lengths)] for i in range(n_seqs)]
    return auto_batch_size(lm.model, resolve(lm.model), lm.tokenizer, seqs, [1, 2], 256, **kw)


def test_auto_batch_size_on_cpu_follows_memory_budget(tiny_loaded):
    from extract.forward.autobatch import AUTO_MEMORY_FRACTION, forward_bytes_per_prompt

    per = forward_bytes_per_prompt(tiny_loaded.model.config, 300, 4)  # longest prompt: 300
    assert _auto(tiny_loaded, 24, available_bytes=2**40) == 32  # capped: 24 examples need 32
    assert _auto(tiny_loaded, 1000, available_bytes=2**40) == 256  # capped by AUTO_MAX_BATCH
    budget = int(20 * per / AUTO_MEMORY_FRACTION)
    assert _auto(tiny_loaded, 1000, available_bytes=budget) == 16  # 16 fit, 32 do not
    assert _auto(tiny_loaded, 1000, available_bytes=1) == 1
    # longer prompts -> fewer per batch for the same memory
    assert _auto(tiny_loaded, 1000, lengths=(600,), available_bytes=budget) < 16


def test_auto_batch_size_on_cuda_backs_off_on_out_of_memory(tiny_loaded, monkeypatch):
    import extract.forward.autobatch as autobatch

    tried = []

    def fake_run_batch(model, res, ids, mask, ans):
        tried.append(ids.shape[0])
        if ids.shape[0] > 8:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    for name in ("reset_peak_memory_stats", "synchronize", "empty_cache"):
        monkeypatch.setattr(torch.cuda, name, lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: 0)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda *a: type("P", (), {"total_memory": 1})
    )
    monkeypatch.setattr(autobatch, "run_batch", fake_run_batch)
    from extract.model.arch import resolve

    res = resolve(tiny_loaded.model)
    seqs = [[5] * k for k in (10, 30, 20)] * 20
    longest = sorted(seqs, key=len, reverse=True)

    def fits(bs):
        return autobatch.probe_fits(
            tiny_loaded.model, res, tiny_loaded.tokenizer, longest[:bs], [1, 2], "left"
        )

    assert autobatch.largest_fitting([64, 32, 16, 8, 4, 2, 1], fits) == 8
    assert tried == [60, 32, 16, 8]  # 64 asked, only 60 prompts exist; the longest ones first


def test_extract_records_the_auto_batch_size(tmp_path, tiny_loaded, data_dir, tiny_llama_dir):
    from extract.cli import add_arguments
    from extract.run import ExtractConfig, extract

    cfg = ExtractConfig(
        model=str(tiny_llama_dir),
        dataset="mmlu",
        out=str(tmp_path / "auto.zarr"),
        category="stem",
        data_dir=str(data_dir),
        limit=24,
        batch_size="auto",
        progress=False,
    )
    summary = extract(cfg, loaded=tiny_loaded)
    assert summary.complete and summary.extra["batch_size"] == 32
    assert "batch size: auto -> 32 (largest that fits)" in summary.lines()
    run = zarr.open_group(str(tmp_path / "auto.zarr"), mode="r").attrs["layercal"]["runs"][-1]
    assert run["batch_size"] == 32 and run["batch_size_requested"] == "auto"

    import argparse

    p = argparse.ArgumentParser()
    add_arguments(p)
    base = ["--model", "m", "--dataset", "mmlu", "--out", "o"]
    assert p.parse_args([*base, "--batch-size", "auto"]).batch_size == "auto"
    assert p.parse_args([*base, "--batch-size", "8"]).batch_size == 8
    for bad in ("0", "big"):
        with pytest.raises(SystemExit):
            p.parse_args([*base, "--batch-size", bad])
