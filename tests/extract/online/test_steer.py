"""Online steering with a forward hook: KV reuse equals a full forward, and at the last depth
online steering equals offline steering on the stored residual (tiny models and SmolLM2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.model.arch import resolve
from extract.online.steer import (
    SteeringHook,
    forward_logits,
    kv_sweep,
    make_sweeper,
    online_sweep,
    store_prompts,
)
from tests.extract.tiny_models import VOCAB, tiny_model

ANSWERS = [5, 6, 7, 8]
SUBJECTS = ["formal_logic", "astronomy"]


def _batch(seed=0, b=3, t=12):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (b, t), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding of different lengths
    mask[1, :2] = 0
    return ids.masked_fill(mask == 0, 0), mask, torch.randn(64, generator=g) * 3


@pytest.mark.parametrize(
    ("arch", "rows"), [("llama", 32), ("llama", 1), ("gemma2", 32), ("gpt2", 4)]
)
def test_kv_reuse_equals_full_forward_with_hook(arch, rows):
    """rows 1: one α per step on the cropped cache; 4: α in groups; 32: all α in one step."""
    model = tiny_model(arch)
    res = resolve(model)
    ids, mask, vec = _batch()
    coefs = [0.0, 1.0, -2.0, 0.5]
    for layer in (0, 2, res.n_depth - 1):
        with SteeringHook(res, layer, vec) as hook:
            kv = kv_sweep(model, hook, ids, mask, ANSWERS, coefs, rows_per_step=rows)
            full = []
            for c in coefs:
                hook.coef = c
                full.append(forward_logits(model, ids, mask, ANSWERS))
        full_t = torch.stack(full)
        torch.testing.assert_close(kv, full_t, atol=1e-5, rtol=1e-5)
        assert (full_t[1] - full_t[0]).abs().max() > 1e-2  # the hook does act at this depth


def test_alpha_zero_is_exact_and_hook_is_removed():
    model = tiny_model("llama")
    res = resolve(model)
    ids, mask, vec = _batch(1)
    plain = forward_logits(model, ids, mask, ANSWERS)
    with SteeringHook(res, 2, vec) as hook:
        assert torch.equal(forward_logits(model, ids, mask, ANSWERS), plain)  # coef 0: untouched
        hook.coef = 1.0
        assert not torch.equal(forward_logits(model, ids, mask, ANSWERS), plain)
    assert torch.equal(forward_logits(model, ids, mask, ANSWERS), plain)  # removed on exit
    with pytest.raises(ValueError, match="outside"):
        SteeringHook(res, res.n_depth, vec)


def test_all_positions_differs_from_last_position():
    model = tiny_model("llama")
    res = resolve(model)
    ids, mask, vec = _batch(2)
    out = {}
    for pos in ("last", "all"):
        with SteeringHook(res, 1, vec, pos) as hook:
            hook.coef = 1.0
            out[pos] = forward_logits(model, ids, mask, ANSWERS)
    assert (out["last"] - out["all"]).abs().max() > 1e-3
    with SteeringHook(res, 1, vec, "all") as hook, pytest.raises(ValueError, match="last-position"):
        kv_sweep(model, hook, ids, mask, ANSWERS, [1.0])


@pytest.fixture(scope="module")
def smol_store(smol_store_path):
    return smol_store_path


@pytest.mark.slow
def test_online_equals_offline_at_last_layer_smollm2(smol_store, smollm2):
    """Through the sweeper (which raises when they differ) and recomputed here."""
    import zarr

    from layercal import format as fmt

    g = zarr.open_group(str(smol_store), mode="r")
    last = int(fmt.attrs(g)["layout"]["n_depth"]) - 1
    sweeper, record = make_sweeper(str(smol_store), smollm2, layer=last)
    v = np.random.default_rng(0).normal(size=576)
    v /= np.linalg.norm(v)
    rows = np.array([0, 5, 9])
    alphas = [-0.5, 0.0, 0.5]
    z = sweeper(rows, v, 300.0, alphas)
    assert z.shape == (3, 3, 4)
    assert record["max_abs_diff_vs_offline"] < 1e-3 and record["kv_reuse"]
    h = np.asarray(g["resid"][...])[rows, last].astype(np.float64)
    w = np.asarray(g["W_U"][...])[np.asarray(g["answer_token_ids"][...])]
    from layercal.lens import lens_logits

    off = np.stack([lens_logits(h + a * 300.0 * v, w, fmt.norm_spec(g)) for a in alphas])
    np.testing.assert_allclose(z, off, atol=1e-3)
    assert np.abs(off[0] - off[1]).max() > 0.1  # steering changed the logits


@pytest.mark.slow
def test_kv_reuse_equals_full_forward_smollm2(smol_store, smollm2):
    import zarr

    g = zarr.open_group(str(smol_store), mode="r")
    prompts = store_prompts(g, [1, 2], smollm2.tokenizer)
    ids = [int(x) for x in g["answer_token_ids"][...]]
    v = np.random.default_rng(1).normal(size=576)
    kw = dict(layer=15, vector=v / np.linalg.norm(v), scale=150.0, alphas=[0.0, 1.0])
    kv = online_sweep(smollm2.model, smollm2.tokenizer, prompts, ids, kv=True, **kw)
    full = online_sweep(smollm2.model, smollm2.tokenizer, prompts, ids, kv=False, **kw)
    np.testing.assert_allclose(kv, full, atol=2e-4)
    np.testing.assert_allclose(kv[0], np.asarray(g["model_logits"][...])[[1, 2]], atol=1e-3)
    assert np.abs(kv[1] - kv[0]).max() > 0.05


def test_sweeper_refuses_another_model(smol_store):
    from extract.model.load import LoadedModel

    tiny = LoadedModel(tiny_model("llama"), tokenizer=None, provenance={"model": "tiny"})
    with pytest.raises(ValueError, match="not the one store"):
        make_sweeper(str(smol_store), tiny, layer=1)


@pytest.mark.slow
def test_online_run_steering_matches_offline_report_smollm2(smol_store, smollm2):
    """The online path writes the same tables; at the last depth they equal the offline ones."""
    from analyze.interventions.direction import fit_direction
    from analyze.interventions.steer import run_steering
    from analyze.lens.store import open_store

    ds = open_store(smol_store)
    d = fit_direction(ds, estimator="mean", n_boot=0)
    sweeper, record = make_sweeper(str(smol_store), smollm2, layer=int(ds.sizes["layer"]) - 1)
    kw = dict(alphas=[-0.5, 0.0, 0.5], n_random=1, n_boot=0, limit=3)
    off = run_steering(ds, d, **kw)
    on = run_steering(ds, d, sweeper=sweeper, **kw)
    assert on.table.columns == off.table.columns and on.meta["mode"] == "online"
    # T is fitted on the online α = 0 logits (online), on the stored lens (offline): ~1e-11 apart
    assert on.meta["chosen"] == pytest.approx(off.meta["chosen"], rel=1e-6)
    for col in ("accuracy", "ece", "brier", "nll", "mean_confidence"):
        np.testing.assert_allclose(on.table[col].to_numpy(), off.table[col].to_numpy(), atol=1e-4)
    assert record["max_abs_diff_vs_offline"] < 1e-3
    base = on.meta["baseline"]
    assert base["kind"] == "online_alpha0" and base["compared_layer"] == 30
    assert 0 < base["max_abs_diff_vs_stored"] < 1e-3 and base["tolerance"] == 1e-3
    assert off.meta["baseline"]["kind"] == "stored_lens"


@pytest.mark.slow
def test_online_baseline_at_a_middle_layer_smollm2(smol_store, smollm2):
    """Steering at depth 15: none is the α = 0 forward, within 1e-3 of the stored lens."""
    res, record = _steer_online(smol_store, smollm2, 15, n_random=0, limit=2)  # 8 prompts
    base = res.meta["baseline"]
    assert base["kind"] == "online_alpha0" and base["steered_layer"] == 15
    assert base["compared_layer"] == 30 and 0 < base["max_abs_diff_vs_stored"] < 1e-3
    assert record["max_abs_diff_vs_offline"] is None  # that check is the last depth's
    assert res.table.row(1, named=True)["layer"] == 15


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, tiny_llama_dir, data_dir):
    """A 24-question store of the tiny random Llama (float32), and the model loaded."""
    from extract.model.load import load_model
    from extract.run import ExtractConfig, extract

    loaded = load_model(str(tiny_llama_dir), dtype="float32", device="cpu")
    out = tmp_path_factory.mktemp("tiny-steer") / "tiny.zarr"
    cfg = ExtractConfig(
        model=str(tiny_llama_dir),
        dataset="mmlu",
        out=str(out),
        subjects=["formal_logic", "astronomy"],
        data_dir=str(data_dir),
        limit=24,
        batch_size=8,
        progress=False,
    )
    assert extract(cfg, loaded=loaded).complete
    return out, loaded


def _steer_online(store, loaded, layer, **kw):
    from analyze.interventions.direction import fit_direction
    from analyze.interventions.steer import run_steering
    from analyze.lens.store import open_store

    ds = open_store(store)
    d = fit_direction(ds, estimator="mean", n_boot=0, fit_fraction=0.3)
    sweeper, record = make_sweeper(str(store), loaded, layer=layer)
    kw = {"n_random": 1, "limit": 4, **kw}
    res = run_steering(
        ds, d, sweeper=sweeper, layer=layer, alphas=[-0.5, 0.0, 0.5], n_boot=20,
        model_dtype=record["dtype"], **kw,
    )  # fmt: skip
    return res, record


def test_online_baseline_is_the_alpha0_run_tiny_model(tiny_store):
    """At depth 2 of 4 the baseline is the model's own α = 0 forward, within 1e-3 of the stored
    lens at the last depth, and every change is against it."""
    store, loaded = tiny_store
    res, record = _steer_online(store, loaded, 2)
    base = res.meta["baseline"]
    assert base["kind"] == "online_alpha0" and base["steered_layer"] == 2
    assert base["compared_layer"] == 4 and 0 <= base["max_abs_diff_vs_stored"] < 1e-3
    assert base["store_dtype"] == "float32" and record["store_dtype"] == "float32"
    none, direction = res.table.row(0, named=True), res.table.row(1, named=True)
    assert none["method"] == "none" and direction["layer"] == 2
    assert direction["d_ece"] == pytest.approx(direction["ece"] - none["ece"], abs=1e-12)


def test_online_baseline_off_the_store_is_refused_naming_the_depth(tiny_store):
    """A model whose block 1 is not the store's (same unembedding) runs α = 0 away from the
    stored lens: the run stops and says at which depth and by how much."""
    import copy

    from analyze.interventions.steer_baseline import BaselineMismatchError

    store, loaded = tiny_store
    other = copy.deepcopy(loaded)
    with torch.no_grad():
        resolve(other.model).blocks[1].mlp.down_proj.weight.mul_(3.0)
    with pytest.raises(BaselineMismatchError, match=r"at depth 2.*stored lens logits at depth 4"):
        _steer_online(store, other, 2)


def test_online_equals_offline_at_the_last_depth_for_nonzero_alpha_tiny_model(tiny_store):
    """At the last depth the hooked model's output for α ≠ 0 is the stored lens of h + α·s·d:
    through the sweeper (which checks it) and against the analysis's offline steering."""
    from analyze.interventions.steer_data import StoreData
    from analyze.lens.store import open_store

    store, loaded = tiny_store
    data = StoreData.of(open_store(store))
    sweeper, record = make_sweeper(str(store), loaded, layer=data.layer)
    v = np.random.default_rng(3).normal(size=data.h.shape[1])
    v /= np.linalg.norm(v)
    rows = np.arange(0, 24, 3)
    scale = float(np.linalg.norm(data.h, axis=1).mean())
    alphas = [-0.75, 0.25, 1.0]
    z = sweeper(rows, v, scale, alphas)
    assert record["max_abs_diff_vs_offline"] < 1e-3
    off = data.sweep(rows, v, scale, alphas)
    np.testing.assert_allclose(z, off, atol=1e-3)
    assert np.abs(off[2] - data.lens.logits(data.h[rows])).max() > 0.1  # α moved the logits


@pytest.mark.parametrize("layer", [4, 2])
def test_online_run_with_the_rule_and_limit_tiny_model(tiny_store, tmp_path, layer):
    """`layercal steer --online --limit N` at the last depth and inside the model: N dev and
    N test examples, every method's scalar chosen by the dev rule (NLL, accuracy margin); at
    the last depth the tables equal the offline run's on the same examples."""
    import json

    import polars as pl

    from analyze.interventions.direction import fit_direction
    from analyze.lens.store import open_store
    from layercal.cli import main as layercal

    store, loaded = tiny_store
    ds = open_store(store)
    d = fit_direction(ds, estimator="mean", n_boot=0, fit_fraction=0.3).save(tmp_path / "d")
    common = ["--direction", str(d), "--alphas=-1,-0.5,0.5,1", "--random", "1", "--limit", "6"]
    common += ["--n-boot", "50", "--layer", str(layer)]
    on = tmp_path / "on"
    argv = ["steer", str(store), *common, "--out", str(on), "--online", "--model"]
    assert layercal([*argv, str(loaded.provenance["model"])]) == 0
    meta = json.loads((on / "meta.json").read_text())
    assert meta["mode"] == "online" and meta["layer"] == layer and meta["select"] == "nll"
    assert meta["splits"]["n_dev"] == 6 and meta["splits"]["n_test"] == 6
    sweep = pl.read_csv(on / "sweep.csv")
    dev = sweep.filter((pl.col("method") == "direction") & (pl.col("split") == "dev"))
    keeps = (dev["d_accuracy_lo"] > -0.02) | (dev["param"] == 0)
    assert dev["keeps_accuracy"].to_list() == keeps.to_list()
    allowed = dev.filter(keeps).with_columns(pl.col("param").abs().alias("away"))
    assert meta["chosen"]["direction"] == allowed.sort(["nll", "away"])["param"][0]
    tab = pl.read_csv(on / "steering.csv")
    assert tab["n"].unique().to_list() == [6] and set(tab["baseline"]) == {"online_alpha0"}
    if layer == 4:  # the last depth: online equals offline on the same examples
        off = tmp_path / "off"
        assert layercal(["steer", str(store), *common, "--out", str(off)]) == 0
        ref = pl.read_csv(off / "steering.csv")
        assert ref["method"].to_list() == tab["method"].to_list()
        for col in ("accuracy", "nll", "brier", "ece"):
            np.testing.assert_allclose(tab[col].to_numpy(), ref[col].to_numpy(), atol=1e-4)
        assert meta["online"]["max_abs_diff_vs_offline"] < 1e-3
