"""The tables of the report: what was analysed, the depth landmarks, the per-layer metrics and
the side-by-side comparison row, as :mod:`analyze.report.render` blocks (text only, escaped there)."""

from __future__ import annotations

from typing import Any

from analyze.report import plot as P
from analyze.report.findings import value_at
from analyze.report.numbers import MISSING, ci, num, pct, span
from analyze.report.render import Block, Bullets, Para, Table
from analyze.results import AnalysisResult

LANDMARKS = (
    ("rise_layer", "rise"),
    ("plateau_layer", "plateau"),
    ("peak_miscalibration_layer", "peak miscalibration"),
)
# shown in the landmark table only when the analysis reports them
EXTRA_LANDMARKS = (
    ("first_crossing_layer", "first layer clearly above chance"),
    ("rise_layer_sustained", "sustained rise"),
    ("rise_layer_both_chances", "rise above both chance figures"),
)
# the interval key of a landmark re-selected in every resample (landmarks.json)
INTERVAL_KEYS = {
    "rise_layer": "rise_layer_interval",
    "plateau_layer": "plateau_layer_interval",
    "peak_miscalibration_layer": "peak_layer_interval",
}
# endpoints per layer (issue 17): (column, header, with interval)
ENDPOINT_TABLE = (
    ("ece", "ECE", True),
    ("ece_floor", "ECE floor", False),
    ("smece", "smooth ECE", True),
    ("gap", "gap (conf − acc)", False),
    ("auroc", "AUROC", False),
    ("nll", "NLL", True),
    ("brier", "Brier", True),
    ("brier_reliability", "reliability", False),
    ("brier_resolution", "resolution", False),
)
# per-layer table: (column, header, with interval)
LAYER_TABLE = (
    ("accuracy", "accuracy", True),
    ("ece", "ECE", True),
    ("mce", "MCE", False),
    ("mean_confidence", "confidence", False),
    ("entropy", "entropy", False),
    ("option_mass", "option mass", False),
    ("brier", "Brier", False),
    ("nll", "NLL", False),
    ("kl_to_last", "KL→last", False),
    ("flip_rate", "flip rate", False),
    ("ece_eval", "ECE held-out", False),
    ("ece_temperature_scaled", "ECE held-out, T-scaled", False),
)


def _f3(x: Any) -> str:
    return num(x, 3)


def _template(meta: dict[str, Any]) -> str:
    t = meta.get("template") or meta.get("template_name")
    return str(t.get("name", t)) if isinstance(t, dict) else str(t or MISSING)


def _text(v: Any) -> str:
    """A parameter value for a table: dicts as ``k=v``, runs of consecutive ints as ``a–b``."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={_text(x)}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        if (
            len(v) > 2
            and all(isinstance(x, int) for x in v)
            and list(v) == list(range(v[0], v[-1] + 1))
        ):
            return span(v[0], v[-1])
        return ", ".join(_text(x) for x in v)
    if isinstance(v, float):
        return num(v, spec=".3g")
    return MISSING if v is None else str(v)


def store_table(r: AnalysisResult) -> Table:
    """What was analysed, as a reader needs it: the store, the model and data, the sample, and
    the choices that change the numbers (bins, MCE's minimum count, bootstrap, the split, the
    temperature fit). Cache keys, timings and other bookkeeping stay in meta.json."""
    m, params = r.meta, dict(r.meta.get("params") or {})
    data = "/".join(str(m[k]) for k in ("dataset", "split") if m.get(k)) or MISSING
    if m.get("category"):
        data += f" ({m['category']})"
    n = _text(m.get("n_examples"))
    if m.get("partial"):
        n += f" of {_text(m.get('n_examples_store'))} (a partial store: --allow-partial)"
    boot = params.get("bootstrap")
    if isinstance(boot, dict):
        intervals = (
            f"bootstrap 95 %, {_text(boot.get('n_boot'))} resamples, seed {_text(boot.get('seed'))}"
        )
    else:  # an older result records the number of resamples only
        intervals = f"bootstrap 95 %, {_text(boot)} resamples" if boot else MISSING
    temp = m.get("temperature") or {}
    rows = [
        ["store", str(m.get("store") or m.get("url") or MISSING)],
        ["store hash", str(m.get("store_hash") or MISSING)],
        ["model", str(m.get("model") or MISSING)],
        ["dataset / split", data],
        ["examples (n)", n],
        ["layers analysed", _text(m.get("layers") or P.layer_values(r).tolist())],
        ["template", _template(m)],
        ["ECE bins", _text(params.get("bins"))],
        ["MCE: bins of at least", f"{_text(params.get('mce_min_count'))} examples"],
        ["intervals", intervals],
        ["examples used", _SPLITS.get(str(params.get("split")), str(params.get("split")))],
    ]
    if temp:
        rows.append(
            [
                "temperature scaling",
                f"fitted on the {temp.get('fit_on')} half, measured on the "
                f"{temp.get('measured_on')} half",
            ]
        )
    if params.get("vocab_examples") is not None:
        rows.append(["full-vocabulary lens recomputed for", f"{params['vocab_examples']} examples"])
    return Table(["", ""], rows)


_SPLITS = {
    "all": "all",
    "fit": "the fit half only (--split fit)",
    "eval": "the evaluation half only (--split eval)",
}


def _landmark_interval(lm: dict[str, Any], key: str) -> str | None:
    """``[lo, hi]`` of a landmark layer when the analysis reports one (re-selected in every
    resample: INTERVAL_KEYS; or ``key_lo``/``key_hi``); an end not reached is "none"."""
    if isinstance(iv := lm.get(INTERVAL_KEYS.get(key, "")), list) and len(iv) == 2:
        return "[" + ", ".join("none" if x is None else str(x) for x in iv) + "]"
    lo, hi = lm.get(f"{key}_lo"), lm.get(f"{key}_hi")
    return f"[{lo}, {hi}]" if lo is not None and hi is not None else None


def _correction_table(cp: dict[str, Any]) -> Table:
    sig = cp.get("significant")
    rows = [["layers (peak, last]", f"{cp['start']} → {cp['end']}", ""]]
    if cp.get("n_test") is not None:
        n_test = cp["n_test"]
        rows += [
            ["peak chosen on (selection half)", f"{cp.get('n_selection')} examples", ""],
            ["measured on (test half)", f"{n_test} examples", ""],
            [
                f"ECE at the peak (test half, n = {n_test})",
                num(cp.get("ece_start")),
                _floor(cp, "start"),
            ],
            [
                f"ECE at the last layer (test half, n = {n_test})",
                num(cp.get("ece_end")),
                _floor(cp, "end"),
            ],
        ]
    rows += [
        [
            "ΔECE = ECE(last) − ECE(peak)",
            num(cp.get("delta_ece")),
            ci(cp.get("delta_ece_lo"), cp.get("delta_ece_hi")),
        ],
        [
            "Δ mean confidence",
            num(cp.get("delta_confidence")),
            ci(cp.get("delta_confidence_lo"), cp.get("delta_confidence_hi")),
        ],
        *(
            [
                f"Δ{label} (primary: a proper score)",
                num(cp.get(f"delta_{k}")),
                ci(cp.get(f"delta_{k}_lo"), cp.get(f"delta_{k}_hi")),
            ]
            for k, label in (("nll", "NLL"), ("brier", "Brier"))
            if cp.get(f"delta_{k}") is not None
        ),
        [
            "significant (ΔECE interval excludes 0)",
            MISSING if sig is None else ("yes" if sig else "no"),
            "",
        ],
    ]
    return Table(["correction phase", "estimate", "interval"], rows)


def _floor(cp: dict[str, Any], end: str) -> str:
    floor = cp.get(f"ece_floor_{end}")
    return "" if floor is None else f"floor {num(floor)}"


def plateau_to_last_table(ptl: dict[str, Any]) -> Table:
    """The cross-fitted plateau-to-last contrast: the two halves and the combination."""
    rows = [
        [
            f"plateau {h['plateau_layer']} (chosen on the {h['plateau_chosen_on']} half) → "
            f"{ptl['end']}, measured on the {h['measured_on']} half (n = {h['n']})",
            num(h.get("delta_ece")),
            num(h.get("delta_nll")),
            num(h.get("delta_brier")),
        ]
        for h in ptl.get("halves") or []
    ]
    rows.append(
        [
            "combined (weighted by the halves' sizes), 95% interval",
            f"{num(ptl.get('delta_ece'))} {ci(ptl.get('delta_ece_lo'), ptl.get('delta_ece_hi'))}",
            f"{num(ptl.get('delta_nll'))} {ci(ptl.get('delta_nll_lo'), ptl.get('delta_nll_hi'))}",
            f"{num(ptl.get('delta_brier'))} {ci(ptl.get('delta_brier_lo'), ptl.get('delta_brier_hi'))}",
        ]
    )
    return Table(["plateau → last layer (cross-fitted)", "ΔECE", "ΔNLL", "ΔBrier"], rows)


def endpoint_table(r: AnalysisResult) -> Table | None:
    """One row per layer: ECE beside its floor, smooth ECE with its interval, the signed gap,
    AUROC, NLL and Brier with intervals, and the Brier decomposition; None for a table without
    these columns (an analysis cached before them)."""
    cols = [c for c in ENDPOINT_TABLE if P.column(r.layers, c[0]) is not None]
    if not any(c[0] == "smece" for c in cols):
        return None
    rows = []
    for layer in P.layer_values(r):
        cells = [str(layer)]
        for name, _, with_ci in cols:
            v = _f3(value_at(r, name, int(layer)))
            lo, hi = value_at(r, f"{name}_lo", int(layer)), value_at(r, f"{name}_hi", int(layer))
            ok = with_ci and lo is not None and hi is not None
            cells.append(f"{v} [{_f3(lo)}, {_f3(hi)}]" if ok else v)
        rows.append(cells)
    return Table(["layer", *(h for _, h, _ in cols)], rows, css="layers")


def landmark_blocks(r: AnalysisResult) -> list[Block]:
    """Landmark table (layer, interval when reported, accuracy and ECE there, definition), the
    correction phase with its intervals, and the analysis' notes and other definitions."""
    lm, defs = r.landmarks, dict(r.landmarks.get("definitions") or {})
    shown = [*LANDMARKS, *((k, n) for k, n in EXTRA_LANDMARKS if k in lm)]
    intervals = {key: _landmark_interval(lm, key) for key, _ in shown}
    with_iv = any(v is not None for v in intervals.values())
    rows = []
    for key, name in shown:
        layer = P.landmark_layer(r, key)
        row = [name, "not reached" if layer is None else str(layer)]
        if with_iv:
            row.append(intervals[key] or MISSING)
        if layer is None:
            row += [MISSING, MISSING]
        else:
            row += [pct(value_at(r, "accuracy", layer)), _f3(value_at(r, "ece", layer))]
        rows.append([*row, str(defs.get(key, ""))])
    header = ["landmark", "layer", *(["95% interval"] if with_iv else []), "accuracy", "ECE"]
    out: list[Block] = [Table([*header, "definition"], rows)]
    cp = P.correction_phase(r)
    if cp is not None:
        out.append(_correction_table(cp))
    else:
        out.append(Para("Correction phase: none reported (see the notes below).", css="muted"))
    if isinstance(ptl := lm.get("plateau_to_last"), dict):
        out.append(plateau_to_last_table(ptl))
    if lm.get("chance_best_constant") is not None:
        out.append(
            Para(
                f"Chance: {pct(lm.get('chance_accuracy'))} (uniform guess, mean 1/K) and "
                f"{pct(lm.get('chance_best_constant'))} (always the most frequent letter).",
                css="muted",
            )
        )
    notes = [str(n) for n in lm.get("notes") or []]
    rest = [f"{k}: {v}" for k, v in defs.items() if k not in dict(shown)]
    if notes or rest:
        out.append(Bullets([f"note: {n}" for n in notes] + rest))
    return out


def layer_table(r: AnalysisResult) -> Table:
    """One row per layer: the metrics the table has (intervals for accuracy and ECE) and which
    landmark the layer is; landmark and correction-phase rows are highlighted."""
    min_count = (r.meta.get("params") or {}).get("mce_min_count")
    cols = [
        (name, f"MCE (bins ≥ {min_count})" if name == "mce" and min_count else head, with_ci)
        for name, head, with_ci in LAYER_TABLE
        if P.column(r.layers, name) is not None
    ]
    marks: dict[int, list[str]] = {}
    for key, name in LANDMARKS:
        if (layer := P.landmark_layer(r, key)) is not None:
            marks.setdefault(layer, []).append(name)
    cp = P.correction_phase(r)
    rows, highlight = [], set()
    for i, layer in enumerate(P.layer_values(r)):
        cells = [str(layer)]
        for name, _, with_ci in cols:
            v = _f3(value_at(r, name, int(layer)))
            lo, hi = value_at(r, f"{name}_lo", int(layer)), value_at(r, f"{name}_hi", int(layer))
            cells.append(
                f"{v} [{_f3(lo)}, {_f3(hi)}]"
                if with_ci and lo is not None and hi is not None
                else v
            )
        note = list(marks.get(int(layer), []))
        if cp is not None and cp["start"] < layer <= cp["end"]:
            note.append("correction")
        cells.append(", ".join(note))
        if note:
            highlight.add(i)
        rows.append(cells)
    return Table(
        ["layer", *(h for _, h, _ in cols), "landmark"], rows, css="layers", highlight=highlight
    )


def comparison_row(r: AnalysisResult) -> list[str]:
    """A store's row of the side-by-side table: identity, landmarks, ΔECE, final numbers."""
    last = int(P.layer_values(r)[-1])
    cp = P.correction_phase(r)
    delta = MISSING
    if cp is not None:
        lo, hi = cp.get("delta_ece_lo"), cp.get("delta_ece_hi")
        delta = num(cp.get("delta_ece")) + (f" [{num(lo)}, {num(hi)}]" if ci(lo, hi) else "")
        delta += "" if cp.get("significant") is not False else " (n.s.)"
    data = "/".join(str(r.meta[k]) for k in ("dataset", "split") if r.meta.get(k))
    marks = [P.landmark_layer(r, k) for k, _ in LANDMARKS]
    return [
        r.label,
        str(r.meta.get("store_hash") or MISSING),
        data or MISSING,
        str(r.meta.get("n_examples") or MISSING),
        str(r.layers.height),
        *(MISSING if x is None else str(x) for x in marks),
        delta,
        pct(value_at(r, "accuracy", last)),
        _f3(value_at(r, "ece", last)),
    ]
