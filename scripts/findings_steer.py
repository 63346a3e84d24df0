"""Issue 17's steering tests on one model's stores, each through the public ``layercal`` commands.

Called by scripts/findings.py (steps ``truthfulqa``, ``truncated``, ``overconfident``); each
function runs its commands with the ``step`` runner findings.py passes in and returns the
numbers for the JSON. Written into ``--out`` (``LABEL`` = findings.py's ``--label``):

- ``steer-LABEL-truthfulqa-transfer.csv``: the MMLU direction (fit on ``--source-category``)
  applied unchanged to the TruthfulQA store, α chosen on TruthfulQA dev, reported on TruthfulQA
  test (``layercal steer TQA --direction DIR``: a direction from another store is applied with
  its d and s, and the split is this store's);
- ``steer-LABEL-truthfulqa-indomain.csv``: a direction fit on TruthfulQA's fit part
  (``--indomain-fit-fraction``, seeded, by question), α on its dev part, reported on its test
  part;
- ``steer-LABEL-truncated.csv``: at each depth l of ``--truncated-layers``, the lens read at l
  (``steer --layer l --truncated``) with the TruthfulQA direction on MMLU and the MMLU
  direction on TruthfulQA, so that no store is steered with its own fit;
- ``steer-LABEL-overconfident.csv`` (and ``...-overconfident-online-Ll.csv``): analysis,
  direction fit and steering on ``--overconfident STORE``, then with ``--model`` the online check
  at the last depth and one depth inside the correction phase on ``--overconfident-limit``
  test questions;
- each with ``...-contrasts.csv`` (direction − temperature, direction+temperature −
  temperature), in steering.csv's format with the rows ``none``, ``direction``,
  ``temperature``, ``nullspace``, ``random-i``, ``direction+temperature``;
- ``steer-LABEL.json``: every run's choices, rows with each endpoint's verdict and MDE.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from analyze.interventions.steer_power import ENDPOINTS, verdict

# (name, layercal argv, log) -> whether the command succeeded (findings.step)
Step = Callable[[str, list[str], dict[str, Any]], bool]
META_KEYS = (
    "layer",
    "read_layer",
    "truncated",
    "chosen",
    "combined",
    "select",
    "accuracy_margin",
    "splits",
    "direction_store",
    "random_directions",
    "mode",
    "baseline",
)


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file() or not path.stat().st_size:
        return []
    return pl.read_csv(path).to_dicts()


def with_verdicts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each row but *none*'s with ``verdicts`` {endpoint: improved / worse / no effect}, from
    its paired intervals (:func:`analyze.interventions.steer_power.verdict`)."""
    return [
        r if r.get("method") == "none" else r | {"verdicts": {k: verdict(r, k) for k in ENDPOINTS}}
        for r in rows
    ]


def steer_run(folder: Path) -> dict[str, Any]:
    """What ``layercal steer --out folder`` found: the run's choices, its rows and contrasts
    with the verdicts (empty when the run did not finish)."""
    meta = _json(folder / "meta.json")
    if meta is None:
        return {}
    return {
        "folder": str(folder),
        **{k: meta.get(k) for k in META_KEYS},
        "rows": with_verdicts(_rows(folder / "steering.csv")),
        "contrasts": with_verdicts(_rows(folder / "contrasts.csv")),
    }


def publish(folder: Path, out: Path, name: str) -> list[str]:
    """Copy a run's steering.csv and contrasts.csv to ``out/NAME.csv``, ``NAME-contrasts.csv``."""
    written = []
    for src, dst in (("steering.csv", f"{name}.csv"), ("contrasts.csv", f"{name}-contrasts.csv")):
        if (folder / src).is_file():
            shutil.copyfile(folder / src, out / dst)
            written.append(dst)
    return written


def _steer(store: str, direction: Path, folder: Path, boot: list[str], *extra: str) -> list[str]:
    return ["steer", store, "--direction", str(direction), "--out", str(folder), *boot, *extra]


def ensure_direction(step: Step, log: dict[str, Any], name: str, argv: list[str]) -> Path:
    """The direction folder of ``layercal direction fit`` argv (its ``-o``), fit now unless a
    finished one (``direction.json``) is there already."""
    folder = Path(argv[argv.index("-o") + 1])
    if not (folder / "direction.json").is_file():
        step(name, argv, log)
    return folder


def fit_argv(store: str, folder: Path, estimator: str, *extra: str) -> list[str]:
    """``layercal direction fit STORE -o FOLDER --estimator E ...``."""
    return ["direction", "fit", store, "-o", str(folder), "--estimator", estimator, *extra]


def truthfulqa_steps(
    step: Step,
    log: dict[str, Any],
    *,
    truthfulqa: str,
    mmlu_direction: Path,
    out: Path,
    label: str,
    estimator: str,
    fit_fraction: float,
    boot: list[str],
) -> dict[str, Any]:
    """Item 2 at the last layer: the MMLU direction on TruthfulQA (α on its dev), and an
    in-domain TruthfulQA direction (fit/dev/test by question)."""
    found: dict[str, Any] = {}
    transfer = out / "steer-truthfulqa-transfer"
    if mmlu_direction.is_dir():
        step("truthfulqa-transfer", _steer(truthfulqa, mmlu_direction, transfer, boot), log)
    publish(transfer, out, f"steer-{label}-truthfulqa-transfer")
    found["transfer"] = steer_run(transfer)
    tqa_direction = out / f"direction-truthfulqa-{estimator}"
    fit = fit_argv(truthfulqa, tqa_direction, estimator, "--fit-fraction", f"{fit_fraction:.6g}")
    indomain = out / "steer-truthfulqa-indomain"
    if step("truthfulqa-direction", fit, log):
        step("truthfulqa-indomain", _steer(truthfulqa, tqa_direction, indomain, boot), log)
    publish(indomain, out, f"steer-{label}-truthfulqa-indomain")
    found["indomain"] = steer_run(indomain)
    return found


def truncated_depths(spec: str, layers: dict[str, Any]) -> list[int]:
    """``auto``: from the MMLU store's plateau to the depth before the last (at most 4 depths,
    the latest), else the 4 depths before the last; or a comma-separated list."""
    if spec != "auto":
        return [int(x) for x in spec.split(",") if x.strip()]
    mmlu = next(iter(layers.values()), {})
    last = mmlu.get("last_layer")
    if last is None:
        return []
    plateau = (mmlu.get("landmarks") or {}).get("plateau_layer")
    start = int(plateau) if plateau is not None and plateau < last else last - 4
    return list(range(max(start, last - 4, 0), last))


def truncated_steps(
    step: Step,
    log: dict[str, Any],
    *,
    stores: dict[str, str],
    directions: dict[str, Path],
    depths: list[int],
    out: Path,
    label: str,
    boot: list[str],
) -> dict[str, Any]:
    """Item 4: at each depth, each store steered with the other store's direction and read at
    that depth. ``stores``/``directions``: {"mmlu": ..., "truthfulqa": ...}; the MMLU store is
    steered with the TruthfulQA direction and the reverse."""
    other = {"mmlu": "truthfulqa", "truthfulqa": "mmlu"}
    found: dict[str, Any] = {}
    tables, contrasts = [], []
    for depth in depths:
        for name, store in stores.items():
            folder = out / f"truncated-{name}-L{depth}"
            d = directions[other[name]]
            if d.is_dir():
                args = _steer(store, d, folder, boot, "--layer", str(depth), "--truncated")
                step(f"truncated-{name}-L{depth}", args, log)
            run = steer_run(folder)
            if not run:
                continue
            found[f"{name}-L{depth}"] = run | {"direction_from": other[name]}
            tag = {"store": name, "direction_from": other[name], "depth": depth}
            tables += [tag | r for r in _rows(folder / "steering.csv")]
            contrasts += [tag | r for r in _rows(folder / "contrasts.csv")]
    for rows, name in ((tables, "truncated"), (contrasts, "truncated-contrasts")):
        if rows:
            pl.DataFrame(rows).write_csv(out / f"steer-{label}-{name}.csv")
    return found


def overconfident_steps(
    step: Step,
    log: dict[str, Any],
    *,
    store: str,
    out: Path,
    label: str,
    estimator: str,
    category: str,
    boot: list[str],
    online: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Item 3 on the store extracted with an overconfidence template: analysis, direction fit,
    steering offline, and with ``online`` ({"model", "dtype", "limit", "random", "layers":
    "auto" or a list}) ``steer --online`` at the last depth and inside the correction phase."""
    base = out / "overconfident"
    found: dict[str, Any] = {}
    step("overconfident-analysis", ["analyze", store, "--out", str(base / "analysis"), *boot], log)
    marks = _json(base / "analysis" / "landmarks.json") or {}
    found["landmarks"] = {k: marks.get(k) for k in ("correction_phase", "plateau_layer")}
    d = base / f"direction-{estimator}"
    if step("overconfident-direction", fit_argv(store, d, estimator, "--category", category), log):
        step("overconfident-steer", _steer(store, d, base / "steer", boot), log)
    publish(base / "steer", out, f"steer-{label}-overconfident")
    found["offline"] = steer_run(base / "steer")
    if online and d.is_dir():
        found["online"] = {}
        for depth in online_depths(online.get("layers", "auto"), marks, found["offline"]):
            folder = base / f"online-L{depth}"
            args = _steer(store, d, folder, boot, "--online", "--model", online["model"])
            args += ["--dtype", online["dtype"], "--layer", str(depth)]
            args += ["--limit", str(online["limit"]), "--random", str(online["random"])]
            step(f"overconfident-online-L{depth}", args, log)
            publish(folder, out, f"steer-{label}-overconfident-online-L{depth}")
            found["online"][str(depth)] = steer_run(folder)
    return found


def online_depths(spec: str, marks: dict[str, Any], offline: dict[str, Any]) -> list[int]:
    """``auto``: the last depth and the middle of the store's correction phase (the last only
    when there is none); else a comma-separated list."""
    if spec != "auto":
        return [int(x) for x in str(spec).split(",") if x.strip()]
    last = int((offline or {}).get("layer") or 0)
    cp = marks.get("correction_phase")
    inside = [] if not cp else [(int(cp["start"]) + int(cp["end"])) // 2]
    return sorted({last, *inside})


def slug(label: str) -> str:
    """``label`` as a file-name part: runs of other characters than letters, digits, ``.``,
    ``_`` and ``-`` become one ``-``."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "model"


def write_summary(out: Path, label: str, found: dict[str, Any]) -> Path:
    """``steer-LABEL.json``: every run's numbers (also under findings.json's ``steer_tests``)."""
    path = out / f"steer-{label}.json"
    path.write_text(json.dumps(found, indent=2, default=str) + "\n")
    return path
