"""A store's analysis and questions for the explorer: from the cache of ``layercal analyze``,
in the analysis' order, with unique names; ``--lens`` says what it needs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from analyze.analysis import analyze_store
from analyze.explore import AnalysisParams, ExploreError, load_lens_source, load_source
from analyze.explore.sources import source_of, unique_names
from tests.analyze.planted import make_store, random_logits


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    z, label = random_logits(n=150, n_layers=4)
    subjects = [f"s{i % 3}" for i in range(150)]
    return make_store(
        tmp_path_factory.mktemp("src") / "p.zarr",
        z,
        label,
        subjects=subjects,
        questions=[f"question {i}?" for i in range(150)],
        choices=[[f"{i}-{k}" for k in "abcd"] for i in range(150)],
    )


def test_the_source_is_the_cached_analysis_with_the_store_s_questions(store, tmp_path):
    cache = tmp_path / ".cache"
    first = analyze_store(store, n_boot=50, cache_dir=cache)
    local = tmp_path / "copy.zarr"
    shutil.copytree(store, local)
    analyze_store(local, n_boot=50, cache_dir=cache)
    shutil.rmtree(local / "resid" / "c")  # only the cache can give the numbers now
    src = load_source(local, AnalysisParams(n_boot=50), cache)
    assert src.result.meta["cache_hit"]
    np.testing.assert_array_equal(
        src.result.examples["answer_logits"], first.examples["answer_logits"]
    )
    assert src.questions["question"].to_list()[:2] == ["question 0?", "question 1?"]
    assert src.choices[7] == ["7-a", "7-b", "7-c", "7-d"] and src.letters == list("ABCD")
    assert src.questions["subject"][4] == "s1" and src.mask.shape == (150, 4)


def test_an_analysis_without_per_question_values_is_refused(store):
    res = analyze_store(store, n_boot=20)
    res.examples = {}
    with pytest.raises(ExploreError, match="--no-cache"):
        source_of(res, str(store), AnalysisParams())


def test_names_are_made_unique_with_the_store_file_name(store, tmp_path):
    src = load_source(store, AnalysisParams(n_boot=20), None)
    other = src.__class__(**{**src.__dict__, "store": str(tmp_path / "other.zarr")})
    names = [s.name for s in unique_names([src, other, src])]
    assert names == [f"p · {src.name}", f"other · {src.name}", f"p · {src.name} (2)"]
    assert unique_names([src])[0].name == src.name


def test_a_store_through_a_fitted_lens_is_a_source_of_its_own(store, tmp_path):
    """``explore --lens DIR``: the store's analysis read through the lens, named after it."""
    import analyze

    analyze.fit_lens(store, "temperature", tmp_path / "temp", folds=3)
    plain = load_source(store, AnalysisParams(n_boot=20), None)
    src = load_lens_source(store, tmp_path / "temp", AnalysisParams(n_boot=20))
    assert src.name == f"{plain.name} · temp"
    assert src.result.landmarks["lens"]["kind"] == "temperature"
    assert src.result.layers["lens"].unique().to_list() == ["temp"]
    # the same questions, other probabilities: the lens is applied, not only named
    assert src.questions.equals(plain.questions)
    assert not np.allclose(src.result.layers["ece"].to_numpy(), plain.result.layers["ece"])
    with pytest.raises(ValueError, match="lens.json"):  # the CLI prints it as an error
        load_lens_source(store, tmp_path / "nothing", AnalysisParams())
