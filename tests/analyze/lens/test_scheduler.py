"""``--scheduler``: threads, a LocalCluster of worker processes, a running cluster's address and
``auto`` give identical results; a store several times larger than what a worker's memory limit
leaves for data is analysed without a worker being killed, in bounded memory.

The memory limit: a worker that has imported the analysis stack (numpy, xarray, zarr, polars)
already holds ~190 MiB, and distributed terminates a worker at 95% of its limit, so a 150 MiB
limit would kill it before it read anything. The worker gets 384 MiB (~190 MiB left for data)
and the store holds 576 MiB of resid: 1.5x the whole limit, 3x what is left for data. Stores are
built block by block (test_vocab.make_store holds the whole store in float64 at once, several
GB at this size); the values are rounded to bf16, as a bf16 model's store is, so the store takes
~220 MB on disk and builds in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dask
import numpy as np
import pytest

from analyze.analysis import analyze_store
from analyze.cli import main as cli_main
from analyze.lens.scheduler import dask_scheduler, scheduler_spec
from layercal.lens import NormSpec
from layercal.testing import example_meta, recorded_block, synthetic_store
from tests.analyze.planted import make_store, random_logits

BIG = {"n": 16384, "n_layers": 9, "d": 1024}  # resid: 16384 x 9 x 1024 float32 = 576 MiB
WORKER_LIMIT = 384 << 20


def build_big(path: Path, n: int, n_layers: int, d: int, vocab: int = 64, k: int = 4) -> Path:
    """A complete store of random bf16-valued residuals, written one block at a time."""
    rng = np.random.default_rng(0)
    w_u = rng.normal(0, 1 / np.sqrt(d), (vocab, d)).astype(np.float32)
    ids = np.arange(k) * 7 + 3
    spec = NormSpec("rmsnorm", np.ones(d, np.float32), None, 1e-6)
    subjects = [f"s{i % 4}" for i in range(n)]
    meta = example_meta(
        rng.integers(0, k, n),
        subjects,
        categories=["c" + s[-1] for s in subjects],
        example_ids=[f"big/{i:06d}" for i in range(n)],
        n_choices=k,
    )
    ident = {"model": "big", "dataset": "synthetic", "split": "test", "dtype": "bfloat16"}
    drift = rng.normal(0, 1, (n_layers, d)).astype(np.float32)  # depth-dependent answers

    def block(b: int, sl: slice) -> dict:
        h = rng.standard_normal((sl.stop - sl.start, n_layers, d), np.float32)
        h += np.linspace(0, 2, n_layers, dtype=np.float32)[:, None] * drift
        h = (h.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)  # bf16 values
        x = h / np.sqrt(np.einsum("eld,eld->el", h, h) / d + spec.eps)[..., None]
        full = (x @ w_u.T).astype(np.float64)  # the lens over the (small) vocabulary
        return recorded_block(h, full, ids)

    ident = {"model": "big", "dataset": "synthetic", "split": "test", "dtype": "bfloat16"}
    return synthetic_store(
        path,
        meta=meta,
        n_depth=n_layers,
        w_u=w_u,
        norm=spec,
        answer_ids=ids,
        blocks=block,
        identity=ident,
        provenance={"template": {"name": "big"}},
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    z, label = random_logits(512, 6, seed=3)
    return make_store(tmp_path_factory.mktemp("sched") / "small.zarr", z, label)


def _analyze(store: Path, out: Path, *scheduler: str) -> Path:
    argv = ["analyze", str(store), "--out", str(out), "--n-boot", "50", "--vocab-examples", "64"]
    assert cli_main([*argv, "--no-cache", "--scheduler", *scheduler]) == 0
    return out


def _same_results(a: Path, b: Path) -> None:
    """Tables, landmarks and reliability counts identical; meta too, but for times."""
    assert (a / "layers.csv").read_bytes() == (b / "layers.csv").read_bytes()
    assert (a / "landmarks.json").read_bytes() == (b / "landmarks.json").read_bytes()
    with np.load(a / "reliability.npz") as ra, np.load(b / "reliability.npz") as rb:
        assert all(np.array_equal(ra[k], rb[k]) for k in ra.files)
    ma, mb = (json.loads((d / "meta.json").read_text()) for d in (a, b))
    times = {"timing": None, "created": None}
    assert {**ma, **times} == {**mb, **times}


def test_scheduler_choices_are_checked(store, tmp_path, capsys):
    for ok in ("auto", "threads", "processes", "tcp://10.0.0.1:8786", "node7:8786"):
        assert scheduler_spec(ok) == ok
    with pytest.raises(SystemExit) as e:
        cli_main(["analyze", str(store), "--out", str(tmp_path), "--scheduler", "thread"])
    assert e.value.code == 2 and "scheduler address such as" in capsys.readouterr().err
    argv = ["analyze", str(store), "--out", str(tmp_path / "x"), "--scheduler", "threads"]
    assert cli_main([*argv, "--workers", "2"]) == 1
    assert "apply to --scheduler processes" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        cli_main([*argv[:-1], "processes", "--memory-limit", "lots"])
    assert "expected a size such as 2GiB" in capsys.readouterr().err
    with dask_scheduler("auto") as chosen:  # no client, no DASK_SCHEDULER_ADDRESS: threads
        assert chosen == "threads" and dask.config.get("scheduler") == "threads"


def test_processes_and_a_cluster_address_give_the_threaded_results(store, tmp_path, capsys):
    from distributed import Client, LocalCluster

    ref = _analyze(store, tmp_path / "threads", "threads")
    local = ["processes", "--workers", "2", "--threads-per-worker", "1"]
    _same_results(_analyze(store, tmp_path / "processes", *local), ref)
    err = capsys.readouterr().err
    assert "local cluster of 2 worker processes x 1 threads" in err and "dashboard http" in err
    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        _same_results(_analyze(store, tmp_path / "address", cluster.scheduler_address), ref)
        assert f"connected to {cluster.scheduler_address} (1 workers)" in capsys.readouterr().err
        assert len(cluster.scheduler_info["workers"]) == 1  # disconnected, not shut down
        address = {"scheduler-address": cluster.scheduler_address}  # $DASK_SCHEDULER_ADDRESS
        with dask.config.set(address), dask_scheduler("auto") as chosen:
            assert chosen == cluster.scheduler_address
        with Client(cluster):
            with dask_scheduler("auto") as chosen:  # an active client is used
                assert chosen.startswith("distributed") and dask.config.get("scheduler") == (
                    "dask.distributed"
                )
            with dask_scheduler("threads"):  # and threads overrides it
                assert dask.config.get("scheduler") == "threads"


def test_store_larger_than_worker_memory(tmp_path):
    from distributed import default_client
    from distributed.diagnostics import MemorySampler

    path = build_big(tmp_path / "big.zarr", **BIG)
    try:
        assert BIG["n"] * BIG["n_layers"] * BIG["d"] * 4 >= 1.5 * WORKER_LIMIT
        kw = {"n_boot": 20, "vocab_examples": 64}
        sampler = MemorySampler()
        # a killed worker fails the computation at once instead of being replaced and retried
        with (
            dask.config.set({"distributed.scheduler.allowed-failures": 0}),
            dask_scheduler(
                "processes", workers=1, threads_per_worker=1, memory_limit=str(WORKER_LIMIT)
            ),
        ):
            client = default_client()
            workers = set(client.scheduler_info()["workers"])
            with sampler.sample("analysis", measure="process", interval=0.1):
                dist = analyze_store(path, **kw)
            assert set(client.scheduler_info()["workers"]) == workers  # none restarted
        peak = max(b for _, b in sampler.samples["analysis"])
        assert peak < 0.95 * WORKER_LIMIT  # below the terminate threshold throughout
        assert dist.layers["n"].to_list() == [BIG["n"]] * BIG["n_layers"]
        with dask_scheduler("threads"):
            ref = analyze_store(path, **kw)
        assert dist.layers.equals(ref.layers) and dist.landmarks == ref.landmarks
        assert dist.meta["checks"] == ref.meta["checks"]
    finally:
        shutil.rmtree(path, ignore_errors=True)  # ~220 MB
