"""analyze_store and `layercal analyze` on real stores with planted logits (see test_vocab)."""

from __future__ import annotations

import json
import shutil
import uuid

import fsspec
import numpy as np
import polars as pl
import polars.selectors as cs
import pytest
import xarray as xr

from analyze import calibration as M
from analyze.analysis import analyze_store
from analyze.calibration import TEMPERATURE_STREAM, fit_temperatures, stratified_split
from analyze.cli import main as cli_main
from analyze.cli.analyze import parse_layers, store_names, write_tables
from analyze.lens.store import IncompleteStoreError, open_store
from analyze.results import INTERVAL_METRICS, LAYER_COLUMNS, AnalysisResult
from layercal.format import StoreError
from tests.analyze.planted import ANSWER_IDS, direct, make_store

N, L, K = 384, 6, 4
SCALES = [0.0, 0.3, 1.0, 2.0, 4.5, 3.0]  # logits = scale * calibrated base (+ noise early)
REQUIRED = [
    "layer",
    "n",
    "accuracy",
    "ece",
    "mce",
    "brier",
    "nll",
    "mean_confidence",
    "entropy",
    "option_mass",
    "store_hash",
]


def planted():
    """Labels drawn from softmax(base): the base logits are calibrated, so a layer whose logits
    are ``s * base`` needs temperature s; the last layer is overconfident by 3."""
    rng = np.random.default_rng(0)
    base = rng.normal(0, 1.5, (N, K))
    p = np.exp(base) / np.exp(base).sum(1, keepdims=True)
    label = (rng.random(N)[:, None] > p.cumsum(1)).sum(1)
    z = (
        np.stack([s * base for s in SCALES], axis=1)
        + rng.normal(0, 0.3, (N, L, K)) * (np.arange(L) < 2)[None, :, None]
    )
    return z, label


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    z, label = planted()
    subjects = [f"s{i % 3}" for i in range(N)]
    return make_store(tmp_path_factory.mktemp("a") / "planted.zarr", z, label, subjects=subjects)


@pytest.fixture(scope="module")
def result(store):
    return analyze_store(store, n_boot=200, vocab_examples=None)


def ece_loop(conf, correct, m=10):
    """ECE by a plain loop over equal-width bins (independent of analyze.calibration._binning)."""
    total = 0.0
    for b in range(m):
        inside = (conf >= b / m) & ((conf < (b + 1) / m) | ((b == m - 1) & (conf <= 1)))
        if inside.any():
            total += inside.sum() / conf.size * abs(correct[inside].mean() - conf[inside].mean())
    return total


def test_layer_table_equals_direct_computation(store, result):
    z, label = planted()
    df = result.layers
    assert list(df.columns[: len(LAYER_COLUMNS)]) == list(LAYER_COLUMNS)
    assert {f"{k}_{s}" for k in INTERVAL_METRICS for s in ("lo", "hi")} <= set(df.columns)
    assert df["layer"].to_list() == list(range(L)) and (df["n"] == N).all()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    for i in range(L):
        conf, correct = p[:, i].max(1), (p[:, i].argmax(1) == label).astype(float)
        row = df.row(i, named=True)
        assert row["accuracy"] == pytest.approx(correct.mean())
        assert row["ece"] == pytest.approx(ece_loop(conf, correct), abs=1e-6)
        assert row["mean_confidence"] == pytest.approx(conf.mean(), abs=1e-6)
        assert row["nll"] == pytest.approx(-np.log(p[np.arange(N), i, label]).mean(), abs=1e-5)
        for k in INTERVAL_METRICS:
            assert row[f"{k}_lo"] - 1e-9 <= row[k] <= row[f"{k}_hi"] + 1e-9
    ds = open_store(store)
    lse, ent, pv = direct(ds["resid"].values, ds["W_U"].values, LensSpecOf(ds))
    np.testing.assert_allclose(df["vocab_entropy"], ent.mean(0), atol=1e-4)
    np.testing.assert_allclose(df["option_mass"], pv[..., ANSWER_IDS].sum(-1).mean(0), atol=1e-5)
    assert result.meta["checks"]["ok"] and result.meta["vocab"]["n_examples"] == N
    assert df["kl_to_last"][-1] == 0 and df["flip_rate"][-1] == 0


def LensSpecOf(ds):
    from analyze.lens.store import norm_spec_of

    return norm_spec_of(ds)


def test_groups_reliability_and_landmarks(result):
    z, label = planted()
    bg = result.by_group
    assert set(bg["group_by"]) == {"subject", "category"}
    row = bg.filter(
        (pl.col("group_by") == "subject") & (pl.col("group") == "s1") & (pl.col("layer") == 3)
    )
    sub = np.arange(N) % 3 == 1
    zz = z[sub, 3]
    probs = np.exp(zz) / np.exp(zz).sum(1, keepdims=True)
    conf, corr = probs.max(1), probs.argmax(1) == label[sub]
    assert row["n"].item() == sub.sum()
    assert row["ece"].item() == pytest.approx(M.ece(conf, corr), abs=1e-6)
    assert row["mce"].item() == pytest.approx(M.mce(conf, corr), abs=1e-6)
    assert row["accuracy"].item() == pytest.approx(corr.mean())
    rel = result.reliability
    assert rel["count"].shape == (L, 10) and rel["conf_hist"].shape == (L, 20)
    assert (rel["count"].sum(1) == N).all() and (rel["conf_hist"].sum(1) == N).all()
    acc = result.layers["accuracy"].to_numpy()
    np.testing.assert_allclose(rel["sum_correct"].sum(1) / N, acc)
    lm = result.landmarks
    assert lm["rise_layer"] is not None and lm["definitions"]
    assert lm["peak_miscalibration_layer"] == 4  # the most overconfident layer (4.5 x base)
    cp = lm["correction_phase"]
    assert cp["start"] == 4 and cp["end"] == L - 1 and cp["delta_ece"] < 0 and cp["significant"]
    keys = {"start", "end", "n_layers", "ece_start", "ece_end", "delta_ece", "delta_ece_lo"}
    keys |= {"delta_ece_hi", "delta_confidence", "delta_confidence_lo", "delta_confidence_hi"}
    assert keys | {"significant", "significant_confidence", "n_test", "n_selection"} <= set(cp)
    assert cp["n_test"] + cp["n_selection"] == N
    # ECE at both ends of the phase: the test half's (the store's subjects and ids, seed 0),
    # by the loop formula
    subjects, ids = [f"s{i % 3}" for i in range(N)], [f"ex/{i:05d}" for i in range(N)]
    test = ~M.selection_half(subjects, ids, 0)
    assert test.sum() == cp["n_test"]
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    for key, layer in (("ece_start", cp["start"]), ("ece_end", cp["end"])):
        conf, corr = p[test, layer].max(1), (p[test, layer].argmax(1) == label[test]).astype(float)
        assert cp[key] == pytest.approx(ece_loop(conf, corr), abs=1e-6), key
    assert lm["chance_accuracy"] == 0.25 and lm["rise_threshold"] == 0.25


@pytest.mark.parametrize("split", ["all", "fit"])
def test_bootstrap_summed_chunk_by_chunk_equals_per_layer_bootstrap(store, split):
    # analyze_store sums the bootstrap chunk by chunk while it reads resid (384 examples: two
    # chunks of 256 and 128); the intervals must be those of per_layer_bootstrap on the same
    # logits and rows, and the landmarks' paired intervals those drawn from the seed alone
    from analyze.calibration.landmarks import depth_landmarks
    from analyze.lens.vocab import lens_pass

    ds = open_store(store)
    res = analyze_store(ds, n_boot=150, seed=3, split=split, vocab_examples=0)
    z = np.moveaxis(lens_pass(ds, np.zeros(N, bool))["answer_logits"].values, 1, 0)
    label = ds["label"].values.astype(int)
    fit = stratified_split(
        ds["subject"].values, ds["example_id"].values, 0.5, 3, TEMPERATURE_STREAM
    )
    rows = np.flatnonzero(fit if split == "fit" else np.ones(N, bool))
    want = M.per_layer_bootstrap(z[:, rows], label[rows], n_boot=150, seed=3)
    for k in INTERVAL_METRICS:
        got = res.layers[f"{k}_lo"].to_numpy(), res.layers[f"{k}_hi"].to_numpy()
        # the binned sums are float32 products per chunk (bootstrap_sums): ECE/MCE to 1e-6
        tol = 1e-6 if k in ("ece", "mce") else 1e-12
        np.testing.assert_allclose(got, want[k], rtol=tol, err_msg=k)
    probs = M.answer_probs(z[:, rows])
    conf, correct = M.confidence_and_correct(probs, label[rows])
    selection = M.selection_half(ds["subject"].values[rows], ds["example_id"].values[rows], 3)
    marks = depth_landmarks(
        list(range(L)), conf, correct.astype(float), chance=0.25, selection=selection,
        n_boot=150, seed=3,
    )  # fmt: skip
    assert marks["correction_phase"] is not None
    for k, v in marks["correction_phase"].items():
        assert res.landmarks["correction_phase"][k] == pytest.approx(v, rel=1e-12), k
    assert res.landmarks["selection_split"] == marks["selection_split"]


def test_recorded_entropy_is_averaged_over_every_example_and_spot_checked(store):
    from analyze.analysis import CHECK_VOCAB_EXAMPLES

    res = analyze_store(store, n_boot=50)  # vocab_examples="auto"
    ds = open_store(store)
    recorded = ds["lens_entropy"].values.astype(np.float64)
    # every example's entropy: the recorded one, recomputed for the 8 sampled (they agree)
    np.testing.assert_allclose(res.layers["vocab_entropy"], recorded.mean(0), rtol=1e-6)
    assert res.meta["vocab"]["n_examples"] == CHECK_VOCAB_EXAMPLES
    assert res.meta["vocab"]["entropy"] == (
        "recomputed where sampled, else lens_entropy recorded at extraction"
    )
    assert res.meta["checks"]["lens_entropy_max_abs_diff"] < 1e-4 and res.meta["checks"]["ok"]


def test_store_without_recorded_entropy_gets_it_from_the_sample(tmp_path):
    from analyze.analysis import DEFAULT_VOCAB_EXAMPLES

    z, label = planted()
    path = make_store(tmp_path / "old.zarr", z, label, record_entropy=False)
    ds = open_store(path)
    assert "lens_entropy" not in ds
    res = analyze_store(path, n_boot=50)
    assert res.meta["vocab"]["n_examples"] == DEFAULT_VOCAB_EXAMPLES
    assert res.meta["vocab"]["entropy"].startswith("recomputed for the sampled examples")
    assert "lens_entropy_max_abs_diff" not in res.meta["checks"] and res.meta["checks"]["ok"]
    full = analyze_store(path, n_boot=50, vocab_examples=None)
    _, ent, _ = direct(ds["resid"].values, ds["W_U"].values, LensSpecOf(ds))
    np.testing.assert_allclose(full.layers["vocab_entropy"], ent.mean(0), atol=1e-4)


def test_recorded_entropy_that_disagrees_with_resid_is_reported(tmp_path):
    import zarr

    z, label = planted()
    path = make_store(tmp_path / "bad.zarr", z, label)
    arr = zarr.open_group(str(path), mode="r+")["lens_entropy"]
    arr[:5] = arr[:5] + np.float32(0.5)  # five examples' entropy off by 0.5 nats
    res = analyze_store(path, n_boot=50, vocab_examples=None)
    assert res.meta["checks"]["lens_entropy_max_abs_diff"] == pytest.approx(0.5, abs=1e-3)
    assert not res.meta["checks"]["ok"]
    assert any(
        w.startswith("lens_entropy recomputed from resid differs") for w in res.meta["warnings"]
    )
    # every example recomputed: the column is the recomputed entropy, not the damaged record
    ds = open_store(path)
    _, ent, _ = direct(ds["resid"].values, ds["W_U"].values, LensSpecOf(ds))
    np.testing.assert_allclose(res.layers["vocab_entropy"], ent.mean(0), atol=1e-4)


def test_blas_limit_is_restored_after_overlapping_analyses(store):
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    def blas_threads():
        return [d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"]

    before = blas_threads()
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(analyze_store, store, n_boot=20, vocab_examples=0) for _ in range(2)]
        first, second = (r.result() for r in runs)
    assert blas_threads() == before
    assert first.layers.equals(second.layers)


def test_steps_after_the_pass_give_the_same_numbers_with_one_blas_thread():
    """analyze_store holds BLAS to one thread after the pass too (analyze._pass.one_blas_thread,
    issue 22.5); the endpoints, temperature and landmark bootstraps that run there give the same
    numbers, to the bit, as with BLAS's own threads (what ran before)."""
    from threadpoolctl import threadpool_limits

    from analyze._pass import one_blas_thread

    rng = np.random.default_rng(5)
    n_layers, n, n_boot = 6, 3000, 300
    conf = rng.uniform(0.25, 1.0, (n_layers, n))
    correct = (rng.random((n_layers, n)) < conf).astype(float)
    w_t = np.ascontiguousarray(M.draw_weights(n, n_boot, 0).T, np.float32)
    z = rng.normal(size=(n_layers, n, 4)) * np.linspace(0.5, 3, n_layers)[:, None, None]
    label, mask = rng.integers(0, 4, n), np.ones((n, 4), bool)
    half = np.arange(n) % 2 == 0

    def steps():
        ends = M.endpoint_rows(
            conf, correct, n_bins=10, ece_floor=np.zeros(n_layers), weights=w_t.T, weights_t=w_t
        )
        temp = M.temperature_columns(z, label, mask, half, 10)[0]
        extras = M.landmark_extras(
            list(range(n_layers)),
            conf,
            correct,
            1 - conf,
            (conf - correct) ** 2,
            half,
            w_t.T,
            chance=0.25,
            chance_best_constant=0.3,
            accuracy_lo=correct.mean(axis=1) - 0.02,
        )
        return ends, temp, json.dumps(extras, sort_keys=True, default=str)

    with threadpool_limits(limits=2, user_api="blas"):
        threaded = steps()
    with one_blas_thread():
        single = steps()
    for a, b in zip(threaded[:2], single[:2]):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert threaded[2] == single[2]


def test_terms_use_the_last_layer_whatever_the_layer_chunks(store):
    from analyze._pass import terms_graph
    from analyze.calibration._probs import per_example_terms
    from analyze.lens.vocab import lens_pass

    ds = open_store(store)
    answers = lens_pass(ds, np.zeros(N, bool))["answer_logits"].data
    label, mask = ds["label"].values.astype(np.int64), np.ones((N, K), bool)
    got = terms_graph(answers.rechunk({0: 100, 1: 2}), label, mask).compute()
    z = np.moveaxis(answers.compute(), 1, 0)
    np.testing.assert_allclose(got, per_example_terms(z, label, mask), rtol=1e-12)


def test_temperature_fitted_on_fit_half_measured_on_eval_half(store, result):
    df, t = result.layers, result.meta["temperature"]
    assert t["n_fit"] + t["n_eval"] == N and abs(t["n_fit"] - t["n_eval"]) <= 3
    assert df["temperature"][-1] == pytest.approx(3.0, rel=0.25)  # the planted overconfidence
    assert df["temperature"][3] == pytest.approx(2.0, rel=0.25)
    late = [4, 5]  # the overconfident layers (4.5 and 3 x calibrated logits)
    assert (df["ece_temperature_scaled"][late] < df["ece_eval"][late] - 0.05).all()
    assert (df["nll_temperature_scaled"][late] < df["nll_eval"][late]).all()
    for split, n in (("fit", t["n_fit"]), ("eval", t["n_eval"])):
        other = analyze_store(store, n_boot=20, split=split, vocab_examples=8)
        assert (other.layers["n"] == n).all()
        assert other.layers["temperature"].to_list() == df["temperature"].to_list()


def test_all_layer_temperature_fit_equals_fit_temperature():
    z, label = planted()
    zl = np.moveaxis(z, 1, 0)
    mask = np.ones((N, K), bool)
    mask[::7, 3] = False  # absent options are ignored
    label = np.where(mask[np.arange(N), label], label, 0)
    zl[1] *= 0.02  # underconfident beyond the bound: T = 0.05
    ref = [M.fit_temperature(zl[i], label, mask) for i in range(L)]
    np.testing.assert_allclose(fit_temperatures(zl, label, mask), ref, rtol=1e-5)


def test_split_is_stratified_seeded_and_order_free():
    subject = np.array([f"s{i % 4}" for i in range(103)])
    ids = np.array([f"e{i}" for i in range(103)])
    fit = stratified_split(subject, ids, 0.5, 0, TEMPERATURE_STREAM)
    for s in np.unique(subject):
        k = fit[subject == s].sum()
        assert abs(k - (subject == s).sum() / 2) <= 1
    perm = np.random.default_rng(1).permutation(103)
    assert (
        stratified_split(subject[perm], ids[perm], 0.5, 0, TEMPERATURE_STREAM) == fit[perm]
    ).all()
    assert not (stratified_split(subject, ids, 0.5, 1, TEMPERATURE_STREAM) == fit).all()


def test_layer_selection_keeps_the_last_layer(store, result):
    res = analyze_store(store, n_boot=20, layers=[0, 2], vocab_examples=0)
    assert res.layers["layer"].to_list() == [0, 2, L - 1]
    full = result.layers.filter(pl.col("layer").is_in([0, 2, L - 1]))
    np.testing.assert_allclose(res.layers["ece"], full["ece"])
    np.testing.assert_allclose(res.layers["kl_to_last"], full["kl_to_last"])
    with pytest.raises(ValueError, match="not in the store"):
        analyze_store(store, layers=[99])
    assert parse_layers("0,10,20-23") == [0, 10, 20, 21, 22, 23]


def test_cache_hit_reads_no_resid_and_changed_parameter_recomputes(store, tmp_path):
    local = tmp_path / "copy.zarr"
    shutil.copytree(store, local)
    cache = tmp_path / "cache"
    kw = dict(n_boot=30, vocab_examples=16, cache_dir=cache)
    first = analyze_store(local, **kw)
    other = analyze_store(local, bins=15, **kw)
    assert not first.meta["cache_hit"] and not other.meta["cache_hit"]
    assert len(list(cache.iterdir())) == 2
    shutil.rmtree(local / "resid" / "c")  # no activations left: only a cache hit can succeed
    again = analyze_store(local, **kw)
    assert again.meta["cache_hit"] and again.meta["cache_key"] == first.meta["cache_key"]
    for a, b in ((again.layers, first.layers), (again.by_group, first.by_group)):
        np.testing.assert_allclose(
            a.select(cs.numeric()).to_numpy(), b.select(cs.numeric()).to_numpy(), rtol=1e-12
        )
    assert again.landmarks == json.loads(json.dumps(first.landmarks))
    assert analyze_store(local, bins=15, **kw).meta["cache_hit"]
    with pytest.raises(StoreError, match="nan or inf"):  # a new seed recomputes: resid is gone
        analyze_store(local, n_boot=30, vocab_examples=16, cache_dir=cache, seed=1)


def test_per_example_values_are_kept_in_the_cache_not_in_the_report(store, result, tmp_path):
    """``examples`` (what ``layercal explore`` shows): the answer logits the table was computed
    from, in store order, and the option mass; saved with a cache entry, not in a report."""
    z, label = planted()
    ex = result.examples
    assert ex["example"].tolist() == list(range(N))
    np.testing.assert_allclose(ex["answer_logits"], z, atol=1e-5)
    acc = (ex["answer_logits"].argmax(-1) == label[:, None]).mean(0)
    np.testing.assert_allclose(acc, result.layers["accuracy"].to_numpy())
    np.testing.assert_allclose(ex["option_mass"].mean(0), result.layers["option_mass"], rtol=1e-6)
    cached = analyze_store(store, n_boot=30, cache_dir=tmp_path / "cache")
    again = analyze_store(store, n_boot=30, cache_dir=tmp_path / "cache")
    assert again.meta["cache_hit"] and set(again.examples) == set(cached.examples)
    for k, v in cached.examples.items():
        np.testing.assert_array_equal(again.examples[k], v)
    result.save(tmp_path / "report")
    assert not (tmp_path / "report" / "examples.npz").exists()
    assert AnalysisResult.load(tmp_path / "report").examples == {}


def test_partial_store_is_an_error_unless_allowed(tmp_path):
    z, label = planted()
    path = make_store(tmp_path / "partial.zarr", z, label, blocks=[0, 2])
    with pytest.raises(IncompleteStoreError, match="--allow-partial"):
        analyze_store(path)
    res = analyze_store(path, allow_partial=True, n_boot=20, vocab_examples=0)
    assert (res.layers["n"] == 256).all() and res.meta["partial"]
    with pytest.raises(IncompleteStoreError, match="missing 128 of 384"):
        analyze_store(xr.open_zarr(path, consolidated=False))  # a Dataset opened by hand too
    out = tmp_path / "rep"
    assert cli_main(["analyze", str(path), "--out", str(out), "--n-boot", "10"]) == 1
    assert not (out / "layers.csv").exists()


def test_remote_memory_store_gives_the_local_result(store):
    fs = fsspec.filesystem("memory")
    name = f"/{uuid.uuid4().hex}.zarr"
    fs.put(str(store), name, recursive=True)
    try:
        remote = analyze_store(f"memory://{name}", n_boot=50, vocab_examples=32)
    finally:
        fs.rm(name, recursive=True)
    local = analyze_store(store, n_boot=50, vocab_examples=32)
    assert remote.layers.equals(local.layers)
    # polars sums groups in parallel: equal to rounding, not bit for bit
    assert remote.by_group.drop(cs.numeric()).equals(local.by_group.drop(cs.numeric()))
    np.testing.assert_allclose(
        *(r.by_group.select(cs.numeric()).to_numpy() for r in (remote, local)), rtol=1e-12
    )
    assert remote.meta["store"] == f"memory://{name}" and remote.meta["checks"]["ok"]


def test_cli_writes_tables_landmarks_and_report(store, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["analyze", str(store), "--out", str(out), "--n-boot", "50", "--by", "subject"]
    assert cli_main([*args, "--layers", "0,2-3", "--vocab-examples", "all"]) == 0
    printed = capsys.readouterr().out
    layers = pl.read_csv(out / "layers.csv")
    assert set(REQUIRED) <= set(layers.columns) and layers["layer"].to_list() == [0, 2, 3, L - 1]
    assert {"accuracy_lo", "ece_hi", "mce_lo"} <= set(layers.columns)
    assert layers["store_hash"].n_unique() == 1
    groups = pl.read_csv(out / "by_group.csv")
    assert set(groups["group_by"]) == {"subject"} and "store_hash" in groups.columns
    marks = json.loads((out / "landmarks.json").read_text())
    assert marks["store_hash"] == layers["store_hash"][0] and "definitions" in marks
    # every key scripts outside read, and the halves that chose and tested the peak
    for key in ("rise_layer", "first_crossing_layer", "rise_layer_sustained", "plateau_layer"):
        assert key in marks
    assert {"peak_miscalibration_layer", "chance_accuracy", "rise_threshold", "notes"} <= set(marks)
    split = marks["selection_split"]
    assert split["n_selection"] + split["n_test"] == N and split["seed"] == 0
    assert "10 examples" in marks["definitions"]["mce"]
    assert "answer-option tokens only" in marks["definitions"]["confidence"]
    assert "landmarks:" in printed
    assert (out / "report.html").is_file() and f"report: {out / 'report.html'}" in printed
    assert "(in " in printed and AnalysisResult.load(out).meta["params"]["layers"] == [0, 2, 3, 5]
    assert len(list((out / ".cache").iterdir())) == 1  # a rerun would load this entry


def test_mce_counts_bins_of_at_least_10_examples_by_default(store, result):
    z, label = planted()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    conf, correct = p.max(-1).T, (p.argmax(-1) == label[:, None]).T.astype(float)
    assert result.meta["params"]["mce_min_count"] == 10
    one = analyze_store(store, n_boot=50, vocab_examples=0, mce_min_count=1)
    for i in range(L):
        want10 = M.mce(conf[i], correct[i], 10, min_count=10)
        want1 = M.mce(conf[i], correct[i], 10, min_count=1)
        assert result.layers["mce"][i] == pytest.approx(want10, abs=1e-6, nan_ok=True)
        assert one.layers["mce"][i] == pytest.approx(want1, abs=1e-6)
    # on this store some bin of fewer than 10 examples sets the min_count = 1 value somewhere
    assert (one.layers["mce"] > result.layers["mce"] + 1e-9).any()


def test_option_mass_never_exceeds_1_when_the_recorded_lse_is_another_computation(tmp_path):
    # a bfloat16 extraction records answer logits and lse of the bf16 forward; the analysis
    # recomputes answer logits from the stored float32 residual. Planted: the answer tokens
    # hold nearly all the probability, and the recorded pair is 0.002 lower than the
    # recomputed one (consistent with itself): mixing recomputed logits with the recorded lse
    # gave exp(0.002) * mass = 1.002
    import zarr

    z, label = planted()
    big = z.copy()
    big[np.arange(N), :, label] += 25.0  # the answer tokens dwarf the rest of the vocabulary
    path = make_store(tmp_path / "bf16.zarr", big, label)
    group = zarr.open_group(str(path), mode="r+")
    for name in ("lens_logits", "lens_lse"):
        group[name][:] = group[name][:] - np.float32(0.002)
    ds = open_store(path)
    rec_z = ds["lens_logits"].values.astype(np.float64)
    rec_lse = ds["lens_lse"].values.astype(np.float64)
    mixed = np.exp(big - rec_lse[..., None]).sum(-1)  # the old computation
    assert mixed.max() > 1.0015
    want = np.minimum(np.exp(rec_z - rec_lse[..., None]).sum(-1), 1.0)
    for vocab in (0, "auto", None):  # recorded pair / some recomputed / every one recomputed
        res = analyze_store(path, n_boot=20, vocab_examples=vocab)
        mass = res.layers["option_mass"].to_numpy()
        assert (mass <= 1.0).all() and mass.max() > 0.99, vocab
        if vocab == 0:
            np.testing.assert_allclose(mass, want.mean(0), rtol=1e-6)


def test_help_documents_layout_and_defaults(capsys):
    from analyze.analysis import CHECK_VOCAB_EXAMPLES, DEFAULT_VOCAB_EXAMPLES

    with pytest.raises(SystemExit):
        cli_main(["analyze", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {CHECK_VOCAB_EXAMPLES} when the store records lens_entropy" in text
    assert f"else {DEFAULT_VOCAB_EXAMPLES})" in text and "several stores" in text
    assert "--allow-partial" in text and "REPORT_DIR/.cache" in text
    assert "(default 10: with 1, one example alone can set MCE)" in text
    assert "softmax over the K answer-option tokens only" in text


def test_several_stores_get_subfolders_and_stacked_tables(result, tmp_path):
    names = store_names(["a/x.zarr", "b/x.zarr", "memory://y.zarr/"])
    assert names == ["x", "x-2", "y"]
    write_tables([result, result], tmp_path, names[:2])
    for name in names[:2]:
        assert (tmp_path / name / "layers.csv").is_file()
    stacked = pl.read_csv(tmp_path / "layers.csv")
    assert stacked.columns[0] == "store" and stacked.height == 2 * L
    assert set(json.loads((tmp_path / "landmarks.json").read_text())["stores"]) == {"x", "x-2"}


@pytest.mark.parametrize("bad", [-1, 2.5, True, "some"])
def test_bad_vocab_examples_is_a_clear_error_and_writes_nothing(store, tmp_path, bad):
    with pytest.raises(ValueError, match="vocab_examples must be 'auto', None \\(all\\) or an"):
        analyze_store(store, n_boot=20, vocab_examples=bad, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_cli_bad_vocab_examples_exits_2_with_the_choices(store, tmp_path, capsys):
    out = tmp_path / "r"
    with pytest.raises(SystemExit) as e:
        cli_main(["analyze", str(store), "--out", str(out), "--vocab-examples", "many"])
    assert e.value.code == 2 and not out.exists()
    assert "--vocab-examples takes a number, 'all' or 'auto', got 'many'" in capsys.readouterr().err


def test_endpoint_columns_equal_the_metric_functions_on_the_lens_probabilities(store, result):
    # issue 17's columns, each recomputed from the planted logits with the metric function alone
    z, label = planted()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    conf = p.max(-1).T  # (L, N)
    correct = (p.argmax(-1) == label[:, None]).T.astype(float)
    df = result.layers
    u = M.floor_uniforms(N, M.FLOOR_SIMULATIONS, seed=0)
    w = M.draw_weights(N, 200, seed=0)
    value, sigma = M.smece_and_bandwidth(conf, correct)
    lo, hi = M.smece_interval(conf, correct, sigma, w)
    dec = M.brier_decomposition(conf, correct, 10)
    np.testing.assert_allclose(df["smece"], value, rtol=1e-6)
    np.testing.assert_allclose(df["smece_lo"], lo, rtol=1e-5)
    np.testing.assert_allclose(df["smece_hi"], hi, rtol=1e-5)
    np.testing.assert_allclose(df["ece_floor"], M.ece_floor(conf, 10, uniforms=u), rtol=1e-6)
    np.testing.assert_allclose(df["gap"], M.signed_gap(conf, correct), atol=1e-6)
    np.testing.assert_allclose(df["auroc"], M.auroc(conf, correct), atol=1e-9)
    np.testing.assert_allclose(df["brier_reliability"], dec["reliability"], atol=1e-7)
    np.testing.assert_allclose(df["brier_resolution"], dec["resolution"], atol=1e-7)
    # the group table: subject s1, every layer; no group intervals unless asked for
    bg = result.by_group.filter((pl.col("group_by") == "subject") & (pl.col("group") == "s1"))
    sub = np.arange(N) % 3 == 1
    np.testing.assert_allclose(bg["smece"], M.smece(conf[:, sub], correct[:, sub]), rtol=1e-6)
    floor = M.ece_floor(conf[:, sub], 10, uniforms=u[:, sub])
    np.testing.assert_allclose(bg["ece_floor"], floor, rtol=1e-6)
    np.testing.assert_allclose(bg["auroc"], M.auroc(conf[:, sub], correct[:, sub]), atol=1e-9)
    assert bg["smece_lo"].is_nan().all()


def test_landmarks_gain_intervals_the_crossfit_and_the_best_constant(store, result):
    z, label = planted()
    lm = result.landmarks
    assert lm["chance_best_constant"] == pytest.approx(M.best_constant_chance(label))
    for key in ("rise_layer_interval", "plateau_layer_interval", "peak_layer_interval"):
        lo, hi = lm[key]
        assert lo is None or hi is None or lo <= hi
        assert key in lm["definitions"]
    rise_lo, rise_hi = lm["rise_layer_interval"]
    assert rise_lo <= lm["rise_layer"] <= rise_hi
    ptl = lm["plateau_to_last"]
    for k in ("delta_ece", "delta_nll"):
        assert ptl[f"{k}_lo"] <= ptl[k] + 1e-12 and ptl[k] <= ptl[f"{k}_hi"] + 1e-12
    assert {h["measured_on"] for h in ptl["halves"]} == {"selection", "test"}
    both = max(lm["chance_accuracy"], lm["chance_best_constant"])
    assert (
        lm["rise_layer_both_chances"] is None or lm["rise_layer_both_chances"] >= lm["rise_layer"]
    )
    assert both >= lm["chance_accuracy"]
    cp = lm["correction_phase"]
    for k in ("delta_nll", "delta_brier"):
        assert cp[f"{k}_lo"] <= cp[k] <= cp[f"{k}_hi"]
    assert cp["delta_nll"] == pytest.approx(cp["nll_end"] - cp["nll_start"], abs=1e-9)
    assert 0 < cp["ece_floor_end"] < 1 and 0 < cp["ece_floor_start"] < 1


def test_group_intervals_on_request(store):
    res = analyze_store(store, n_boot=60, vocab_examples=0, group_intervals=True)
    z, label = planted()
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    conf = p.max(-1).T
    correct = (p.argmax(-1) == label[:, None]).T.astype(float)
    sub = np.arange(N) % 3 == 2
    w = M.draw_weights(N, 60, seed=0)[:, sub]
    _, sigma = M.smece_and_bandwidth(conf[:, sub], correct[:, sub])
    lo, hi = M.smece_interval(conf[:, sub], correct[:, sub], sigma, w)
    bg = res.by_group.filter((pl.col("group_by") == "subject") & (pl.col("group") == "s2"))
    np.testing.assert_allclose(bg["smece_lo"], lo, rtol=1e-5)
    np.testing.assert_allclose(bg["smece_hi"], hi, rtol=1e-5)
    assert res.meta["params"]["group_intervals"] is True
