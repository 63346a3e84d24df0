"""Figures, the HTML/Markdown report and the generated findings, on synthetic AnalysisResults."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
import tempfile
from pathlib import Path

import matplotlib as mpl
import matplotlib.image as mpimg
import numpy as np
import polars as pl
import pytest
from matplotlib.patches import Rectangle

from analyze import calibration as M
from analyze.calibration.landmarks import depth_landmarks
from analyze.report.figures import (
    grid_layers,
    plot_confidence_over_depth,
    plot_metrics_over_depth,
    plot_reliability,
    write_figures,
)
from analyze.report.numbers import ci, num, pct
from analyze.report.plot import use_relative, x_of
from analyze.report.render import Heading, Para, Table, to_html
from analyze.report.write import findings, write_report
from analyze.results import INTERVAL_METRICS, AnalysisResult

K = 4
CATEGORIES = ("humanities", "stem", "social sciences", "other")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _metrics(conf: np.ndarray, correct: np.ndarray, bins: int) -> dict[str, float]:
    """Headline metrics of one layer: conf, correct (n,)."""
    return {
        "accuracy": float(correct.mean()),
        "ece": M.ece(conf, correct, bins),
        "mce": M.mce(conf, correct, bins),
        "mean_confidence": float(conf.mean()),
        "brier": float(((1 - conf) ** 2 * correct + conf**2 * (1 - correct)).mean()),
        "nll": float(
            -np.log(np.clip(np.where(correct > 0, conf, (1 - conf) / (K - 1)), 1e-6, 1)).mean()
        ),
    }


def synthetic_result(
    kind: str = "correction",
    *,
    n_layers: int = 32,
    n: int = 800,
    label: str = "synthetic-7b",
    bins: int = 10,
    n_boot: int = 40,
    seed: int = 0,
) -> AnalysisResult:
    """A realistic AnalysisResult simulated example by example.

    ``kind``: ``correction`` (accuracy rises at ~60% depth, then overconfidence peaks and is
    corrected in the last layers), ``flat`` (accuracy stays at chance), ``late_peak`` (ECE keeps
    growing to the last layer)."""
    rng = np.random.default_rng(seed)
    depth = np.arange(n_layers) / (n_layers - 1)
    if kind == "flat":
        acc_t = np.full(n_layers, 1 / K)
        over = 0.25 + 0.15 * np.sin(8 * depth)
    else:
        acc_t = 1 / K + 0.25 * _sigmoid((depth - 0.62) / 0.03)
        over = 0.04 + 0.30 * np.exp(-(((depth - 0.84) / 0.07) ** 2)) * (depth > 0.6)
        if kind == "late_peak":
            over = 0.04 + 0.3 * depth**4
    p = np.clip(acc_t[:, None] + rng.normal(0, 0.12, (n_layers, n)), 0.02, 0.98)
    correct = (rng.random((n_layers, n)) < p).astype(np.float64)
    conf = np.clip(p + over[:, None] + rng.normal(0, 0.05, (n_layers, n)), 1 / K, 1.0)
    category = np.array(CATEGORIES)[rng.integers(0, len(CATEGORIES), n)]

    rows, boots = [], rng.integers(0, n, (n_boot, n))
    for ell in range(n_layers):
        row = {"layer": ell, "n": n, **_metrics(conf[ell], correct[ell], bins)}
        bs = [_metrics(conf[ell, b], correct[ell, b], bins) for b in boots]
        for name in INTERVAL_METRICS:
            row[f"{name}_lo"], row[f"{name}_hi"] = np.percentile([b[name] for b in bs], [2.5, 97.5])
        rows.append(row)
    layers = pl.DataFrame(rows).with_columns(
        ece_equal_mass=pl.col("ece") * 1.05,
        entropy=pl.lit(np.log(K)) * (1.2 - pl.col("mean_confidence")),
        option_mass=pl.Series(0.02 + 0.9 * depth**3),
        vocab_entropy=pl.Series(9.0 * (1 - depth) + 1.0),
        kl_to_last=pl.Series(2.0 * (1 - depth) ** 2),
        flip_rate=pl.Series(0.75 * (1 - depth) ** 0.5),
        temperature=pl.lit(1.6),
        ece_temperature_scaled=pl.col("ece") * 0.4,
        nll_temperature_scaled=pl.col("nll") * 0.9,
    )
    group_rows = []
    for g in CATEGORIES:
        sel = category == g
        for ell in range(n_layers):
            m = _metrics(conf[ell, sel], correct[ell, sel], bins)
            group_rows.append(
                {"group_by": "category", "group": g, "layer": ell, "n": int(sel.sum()), **m}
            )
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    rel = {
        "count": np.stack([np.bincount(i, minlength=bins) for i in idx]).astype(np.int64),
        "sum_conf": np.stack([np.bincount(i, c, bins) for i, c in zip(idx, conf)]),
        "sum_correct": np.stack([np.bincount(i, c, bins) for i, c in zip(idx, correct)]),
        "conf_hist": np.stack([np.histogram(c, 20, (0, 1))[0] for c in conf]).astype(np.int64),
    }
    return AnalysisResult(
        layers=layers,
        by_group=pl.DataFrame(group_rows),
        landmarks=depth_landmarks(
            layers["layer"].to_numpy(),
            conf,
            correct,
            chance=1 / K,
            accuracy_lo=layers["accuracy_lo"].to_numpy(),
            n_bins=bins,
            n_boot=200,
            seed=seed,
        ),
        reliability=rel,
        meta={
            "store": f"/data/stores/{label}.zarr",
            "store_hash": hashlib.sha256(f"{label}/{kind}".encode()).hexdigest()[:16],
            "model": label,
            "label": label,
            "dataset": "mmlu",
            "split": "test",
            "template": "lm-eval-mmlu",
            "n_examples": n,
            "n_layers": n_layers,
            "params": {"bins": bins, "bootstrap": n_boot, "seed": seed, "mce_min_count": 10},
        },
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def rising() -> AnalysisResult:
    """Accuracy rises at ~60% depth, ECE peaks, then a significant correction phase."""
    return synthetic_result("correction", n_layers=20, n=600)


@pytest.fixture(scope="module")
def flat() -> AnalysisResult:
    """Accuracy at chance throughout: no landmarks after the (absent) rise."""
    return synthetic_result("flat", n_layers=12, n=400, label="guesser-1b")


@pytest.fixture(scope="module")
def single_report(tmp_path_factory, rising) -> Path:
    r = copy.deepcopy(rising)
    r.meta["template"] = "<mmlu & 'friends'>"  # must come out escaped
    return write_report([r], tmp_path_factory.mktemp("single"), n_grid=4)


@pytest.fixture(scope="module")
def multi_report(tmp_path_factory, rising) -> Path:
    other = synthetic_result("correction", n_layers=14, n=400, label="synthetic-1b", seed=1)
    other.by_group = other.by_group.clear()  # no group table: no group figure, no error
    return write_report([rising, other], tmp_path_factory.mktemp("multi"), fmt="md", n_grid=2)


def _with_phase(r: AnalysisResult, **changes) -> AnalysisResult:
    out = copy.deepcopy(r)
    out.landmarks["correction_phase"].update(changes)
    return out


# --------------------------------------------------------------------------- figures


def test_write_figures_png_and_svg(tmp_path, flat):
    figs = write_figures([flat], tmp_path / "figs", n_grid=4)
    expected = {"metrics_over_depth", "confidence_over_depth", "reliability_grid"}
    expected |= {"reliability_final", "confidence_hist", "by_category"}
    assert set(figs) == expected
    for name, paths in figs.items():
        assert set(paths) == {"png", "svg"}
        assert paths["png"] == tmp_path / "figs" / f"{name}.png"
        img = mpimg.imread(paths["png"])
        assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 300, name
        assert img[..., :3].std() > 0.05, f"{name} is blank"
        svg = paths["svg"].read_text()
        assert svg.startswith("<?xml") and "<svg" in svg and len(svg) > 10_000


def test_figures_leave_global_style_alone(rising):
    before = dict(mpl.rcParams)
    plot_metrics_over_depth([rising])
    plot_reliability(rising)
    assert dict(mpl.rcParams) == before


def test_reliability_bars_are_bin_accuracies(rising):
    fig = plot_reliability(rising)
    rel, last = rising.reliability, -1
    full = rel["count"][last] > 0
    acc = rel["sum_correct"][last][full] / rel["count"][last][full]
    bars = fig.axes[0].patches[: int(full.sum())]  # accuracy bars come first, gaps after
    np.testing.assert_allclose([b.get_height() for b in bars if isinstance(b, Rectangle)], acc)
    assert f"ECE {rising.layers['ece'][-1]:.3f}" in fig.axes[0].get_title(loc="left")


def test_grid_layers_span_depth_and_include_landmarks(rising):
    chosen = grid_layers(rising, 6)
    lm = rising.landmarks
    assert chosen[0] == 0 and chosen[-1] == 19 and len(chosen) == 6
    assert lm["rise_layer"] in chosen and lm["peak_miscalibration_layer"] in chosen
    assert chosen == sorted(set(chosen))


# --------------------------------------------------------------------------- report


def test_html_report_is_self_contained(single_report, rising):
    html = single_report.read_text(encoding="utf-8")
    assert single_report.name == "report.html"
    for external in ('src="http', "src='http", "<link", "@import", "url(http", "<script"):
        assert external not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) == 6 and all(s.startswith("data:image/png;base64,") for s in srcs)
    png = base64.b64decode(srcs[0].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    lm, cp = rising.landmarks, rising.landmarks["correction_phase"]
    assert rising.meta["store_hash"] in html
    assert f"<td>{lm['rise_layer']}</td>" in html and f"<td>{lm['plateau_layer']}</td>" in html
    assert f"<td>{lm['peak_miscalibration_layer']}</td>" in html
    assert f"<td>{cp['start']} → {cp['end']}</td>" in html
    assert f"<td>{num(cp['delta_ece'])}</td>" in html
    assert ci(cp["delta_ece_lo"], cp["delta_ece_hi"]) in html
    assert "a confidence correction phase" in html
    assert "&lt;mmlu &amp; &#x27;friends&#x27;&gt;" in html and "<mmlu" not in html
    assert html.count("<tr class='hl'>") >= 3  # landmark rows of the per-layer table


def test_markdown_report_links_the_figures(single_report):
    md = (single_report.parent / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\((figures/[^)]+\.(?:png|svg))\)", md)
    assert "figures/metrics_over_depth.png" in links and len(links) == 12
    assert all((single_report.parent / link).is_file() for link in links)
    assert "| rise |" in md and "| layer | accuracy | ECE |" in md


def test_the_report_links_the_explorer_in_its_folder(single_report, rising, tmp_path):
    html = single_report.read_text(encoding="utf-8")
    assert "layercal explore STORE" in html and 'href="explorer.html"' not in html
    (tmp_path / "explorer.html").write_text("<!DOCTYPE html>")
    write_report([rising], tmp_path)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert '<p><a href="explorer.html">Open the interactive explorer' in html
    assert "[Open the interactive explorer (explorer.html)" in md and "](explorer.html)" in md


def test_several_stores_side_by_side(multi_report, rising):
    assert multi_report.name == "report.md" and multi_report.is_file()
    html = (multi_report.parent / "report.html").read_text(encoding="utf-8")
    assert "Side by side" in html and "2 stores compared" in html
    assert html.count("synthetic-1b") >= 3 and html.count("synthetic-7b") >= 3
    assert rising.meta["store_hash"] in html
    figs = {p.name for p in (multi_report.parent / "figures").iterdir()}
    for i, label in ((1, "synthetic-7b"), (2, "synthetic-1b")):
        assert f"reliability_grid_{i}-{label}.png" in figs
        assert f"confidence_hist_{i}-{label}.svg" in figs
    assert "by_category_1-synthetic-7b.png" in figs and "by_category_2-synthetic-1b.png" not in figs
    assert "metrics_over_depth.png" in figs  # one overlaid figure for both
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 2 + 4 + 3


def test_relative_depth_when_layer_counts_differ(rising, flat):
    assert use_relative([rising, flat], None) and not use_relative([rising, rising], None)
    assert not use_relative([rising, flat], False)
    np.testing.assert_allclose(x_of(rising, [0, 19], True), [0.0, 1.0])


def test_write_report_rejects_unknown_format(tmp_path, rising):
    with pytest.raises(ValueError, match="fmt"):
        write_report([rising], tmp_path, fmt="pdf")
    assert not (tmp_path / "figures").exists()


def test_render_escapes_everything():
    page = to_html([Heading(2, "<h>"), Para("a < b & c"), Table(["<th>"], [["<td>"]])], "<t>")
    assert "<h>" not in page.replace("<html", "").replace("<head", "")
    assert "&lt;t&gt;" in page and "a &lt; b &amp; c" in page and "&lt;td&gt;" in page
    assert "<tr class='hl'>" not in page


# --------------------------------------------------------------------------- findings


def test_findings_significant_correction_phase(rising):
    text = " ".join(findings(rising))
    cp = rising.landmarks["correction_phase"]
    assert cp["significant"] and cp["delta_confidence_hi"] < 0
    assert f"starts to rise at layer {rising.landmarks['rise_layer']}" in text
    # both ends of the phase on the examples the change is tested on, not the all-example ECE
    assert (
        f"On the {cp['n_test']} test examples (the peak layer was chosen on the other "
        f"{cp['n_selection']}), ECE is {num(cp['ece_start'])} at the peak-miscalibration layer "
        f"{cp['start']} and falls to {num(cp['ece_end'])} at the last layer"
    ) in text
    assert cp["delta_ece"] == pytest.approx(cp["ece_end"] - cp["ece_start"])
    assert f"(ΔECE {num(cp['delta_ece'])}, {ci(cp['delta_ece_lo'], cp['delta_ece_hi'])})" in text
    assert "a confidence correction phase" in text and "no significant" not in text


def test_findings_of_an_older_phase_without_halves_use_the_layer_table(rising):
    r = copy.deepcopy(rising)
    for k in ("n_test", "n_selection", "ece_start", "ece_end"):
        r.landmarks["correction_phase"].pop(k)
    cp = r.landmarks["correction_phase"]
    text = " ".join(findings(r))
    assert f"ECE peaks at {num(r.layers['ece'][cp['start']])} at layer {cp['start']}" in text


def test_findings_interval_including_zero_is_not_a_correction_phase(rising):
    r = _with_phase(
        rising, delta_ece=-0.02, delta_ece_lo=-0.06, delta_ece_hi=0.01, significant=False
    )
    text = " ".join(findings(r))
    assert "(ΔECE −0.020, 95% CI [−0.060, 0.010]); the interval includes 0" in text
    assert "no significant correction phase" in text and "a confidence correction phase" not in text


def test_findings_accuracy_at_chance(flat):
    assert flat.landmarks["rise_layer"] is None
    text = " ".join(findings(flat))
    assert "Accuracy never rises clearly above chance (25%)" in text
    assert "(no layer has its lower 95% bound above chance)" in text
    assert flat.landmarks["first_crossing_layer"] is None
    lo = flat.layers["accuracy_lo"].to_numpy()
    assert (lo <= 0.25).all()  # what the sentence says, from the table
    assert "No peak-miscalibration layer is defined" in text and "correction phase:" not in text


def test_findings_threshold_crossed_by_noise(flat):
    r = copy.deepcopy(flat)
    r.landmarks["first_crossing_layer"] = 3
    r.layers = r.layers.with_columns(
        accuracy=pl.when(pl.col("layer") == 3).then(0.33).otherwise(pl.col("accuracy"))
    )
    text = " ".join(findings(r))
    assert "does not rise above chance (25%) for good" in text
    assert "its lower 95% bound is above chance at layer 3 (33.0%)" in text
    assert "guessing" in text and "No peak-miscalibration layer" in text


def test_findings_rise_that_does_not_hold(rising):
    r = copy.deepcopy(rising)
    last = pl.col("layer") == r.layers["layer"].max()
    r.layers = r.layers.with_columns(
        accuracy=pl.when(last).then(0.27).otherwise(pl.col("accuracy")),
        accuracy_lo=pl.when(last).then(0.22).otherwise(pl.col("accuracy_lo")),
    )
    text = " ".join(findings(r))
    assert "does not stay there" in text and "not clearly above chance (25%)" in text
    assert "confidence receding towards a guess" in text
    assert "a confidence correction phase" not in text


def test_findings_gap_closed_by_accuracy_not_confidence(rising):
    r = _with_phase(
        rising, delta_confidence=0.03, delta_confidence_lo=0.01, delta_confidence_hi=0.05
    )
    text = " ".join(findings(r))
    assert "accuracy catches up with confidence" in text
    assert "mean confidence changes by 0.030 (95% CI [0.010, 0.050])" in text


def test_findings_peak_at_last_layer():
    r = synthetic_result("late_peak", n_layers=12, n=300)
    assert (
        r.landmarks["peak_miscalibration_layer"] == 11 and r.landmarks["correction_phase"] is None
    )
    assert "ECE is highest at the last layer" in " ".join(findings(r))


def test_findings_without_intervals(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.drop([c for c in r.layers.columns if c.endswith(("_lo", "_hi"))])
    for k in ("delta_ece_lo", "delta_ece_hi", "significant"):
        r.landmarks["correction_phase"].pop(k)
    text = " ".join(findings(r))
    assert "95% CI" not in text.split("mean confidence changes")[0]
    assert "without a bootstrap interval its significance is unknown" in text


def test_findings_last_layer_and_temperature(rising):
    text = findings(rising)
    i = next(j for j, t in enumerate(text) if t.startswith("At the last layer"))
    last = rising.layers.row(-1, named=True)
    state = "overconfident" if last["mean_confidence"] - last["accuracy"] > 0.02 else "about as"
    assert text[i].startswith(f"At the last layer the model is {state}")
    assert f"accuracy {pct(last['accuracy'])}" in text[i]
    assert f"MCE {num(last['mce'])} over bins of at least 10 examples" in text[i]
    # no unscaled ECE of the held-out half in this table: the T-scaled one is not compared with
    # the ECE of all examples
    assert text[i + 1].startswith(f"Temperature scaling (T = {last['temperature']:.2f}")
    assert f"gives the last layer an ECE of {num(last['ece_temperature_scaled'])}" in text[i + 1]
    assert num(last["ece"]) not in text[i + 1]


def test_temperature_before_and_after_are_on_the_held_out_half(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.with_columns(ece_eval=pl.lit(0.082), ece_temperature_scaled=pl.lit(0.045))
    text = " ".join(findings(r))
    assert "changes the last-layer ECE on the held-out examples from 0.082 to 0.045" in text


def test_findings_say_what_confidence_is_and_where_the_options_hold_no_mass(rising):
    text = " ".join(findings(rising))
    assert "softmax over the K answer-option tokens only" in text
    assert "lens reads tokens the model does not predict" not in text  # mass >= 0.02 everywhere
    r = copy.deepcopy(rising)
    low = pl.col("layer").is_in([0, 1, 2, 3, 4, 5, 8])
    r.layers = r.layers.with_columns(
        option_mass=pl.when(low).then(0.004).otherwise(pl.col("option_mass"))
    )
    text = " ".join(findings(r))
    assert (
        "At layers 0–5, 8 the answer options hold under 1% of the full-vocabulary probability "
        "(mean option mass < 0.01): there the lens reads tokens the model does not predict"
    ) in text
    html = write_report([r], Path(tempfile.mkdtemp()), n_grid=2).read_text(encoding="utf-8")
    assert "lens reads tokens the model does not predict" in html
    assert "MCE counts only bins of at least 10 examples" in html  # the reading guide
    assert "measured on (test half)" in html  # the correction-phase table
    assert "MCE (bins ≥ 10)" in html  # the per-layer table


def test_option_mass_is_beside_mean_confidence(rising):
    r = copy.deepcopy(rising)
    r.layers = r.layers.with_columns(
        option_mass=pl.when(pl.col("layer") < 3).then(0.001).otherwise(pl.col("option_mass"))
    )
    fig = plot_confidence_over_depth([r])
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_visible()]
    assert titles[0].startswith("mean confidence") and titles[1].startswith("option mass")
    shaded = [p for p in fig.axes[0].patches if str(p.get_label()).startswith("option mass < 1%")]
    assert len(shaded) == 1  # one labelled band (layers 0-2); the others carry no label
    plain = plot_confidence_over_depth([rising])  # option mass >= 0.02: nothing shaded
    assert len(fig.axes[0].patches) - len(plain.axes[0].patches) == 3  # layers 0, 1, 2


def test_long_store_labels_give_short_distinct_file_names():
    from analyze.report.plot import slug

    subjects = "-".join(f"subject_number_{i}" for i in range(57))  # a full-MMLU label, 1,000+ chars
    a, b = slug("smollm2 · mmlu " + subjects), slug("smollm2 · mmlu " + subjects + "x")
    assert len(a) <= 60 and len(b) <= 60 and a != b and a.startswith("smollm2-mmlu-subject")
    assert slug("synthetic-7b") == "synthetic-7b"
