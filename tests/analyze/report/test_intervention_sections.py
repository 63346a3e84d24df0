"""analyze/report/intervention_sections.py: the null-space and direction sections, computed on
planted stores, print their numbers by the one convention (analyze/report/numbers.py)."""

from __future__ import annotations

import re

import polars as pl
import pytest

from analyze.interventions import svd as S
from analyze.interventions.direction import fit_direction
from analyze.interventions.nullspace import run_nullspace
from analyze.lens.store import open_store
from analyze.report.intervention_sections import direction_blocks, nullspace_blocks
from analyze.report.numbers import MISSING, with_ci
from analyze.report.render import Bullets, Table, to_markdown
from tests.analyze.interventions.planted import planted_store

ASCII_NEGATIVE = re.compile(r"(?<![\w\]])-\d")  # a hyphen-minus before a digit: not our minus


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return open_store(str(planted_store(tmp_path_factory.mktemp("sec") / "s.zarr", n=160)))


def test_nullspace_section_cells_are_the_table_values(ds, tmp_path):
    svd = S.unembed_svd(ds, cache=False)
    res = run_nullspace(ds, svd, fractions=[0.1, 0.25], n_random=1, n_boot=20, vocab_examples=8)
    blocks = nullspace_blocks(res.ablation, res.share, res.meta, {})
    table = next(b for b in blocks if isinstance(b, Table))
    last, k0 = max(res.meta["layers"]), res.meta["default_k"]
    rows = res.ablation.filter(
        (pl.col("layer") == last) & (pl.col("k") == k0) & (pl.col("beta") == 0.0)
    ).to_dicts()
    assert [r[0] for r in table.rows] == [r["condition"] for r in rows]
    for cells, r in zip(table.rows, rows):
        assert cells[1] == with_ci(r, "d_ece", signed=True)
    text = to_markdown(blocks, None, tmp_path, escape=False)
    assert not ASCII_NEGATIVE.search(text), ASCII_NEGATIVE.search(text)
    assert "–" not in text.replace("k / d", "")  # no en dash as a missing value


def test_direction_section_marks_a_missing_control_with_an_em_dash(ds, tmp_path):
    d = fit_direction(ds, estimator="pca", n_boot=0)
    text = to_markdown(direction_blocks(d.info, {}), None, tmp_path, escape=False)
    assert "Estimator `pca`" in text and f"depths {d.info['window'][0]}–" in text
    # the window notes are direction.json's own text (written by the fit); the rest is ours
    ours = "\n".join(x for x in text.splitlines() if not x.startswith("- window:"))
    assert not ASCII_NEGATIVE.search(ours), ASCII_NEGATIVE.search(ours)
    diag = {
        **d.info["diagnostics"],
        "category_cosines": {
            "mean_pairwise_cosine": 0.5,
            "mean_pairwise_cosine_control": None,
            "categories": ["stem", "other"],
            "n_fit": [40, 41],
            "cosine_to_direction": [-0.25, 0.75],
            "cosine_to_control": None,
        },
    }
    blocks = direction_blocks({**d.info, "diagnostics": diag}, {})
    bullets = next(b for b in blocks if isinstance(b, Bullets))
    assert any(
        f"+0.500 on the window, {MISSING} on the control window" in item for item in bullets.items
    )
    table = next(b for b in blocks if isinstance(b, Table))
    assert table.rows == [
        ["stem", "40", "\u22120.250", MISSING],
        ["other", "41", "+0.750", MISSING],
    ]
