"""Reading a dataset from the Hugging Face hub (or a local folder in the hub layout).

The `datasets` library is imported lazily, so the rest of the loaders work without it.
"""

from __future__ import annotations

from typing import Any

from extract.data.examples import DatasetError


def load_hub_columns(repo: str, config: str, split: str) -> dict[str, list[Any]]:
    """Columns of `datasets.load_dataset(repo, config, split=split)` as python lists.

    `repo` is a hub id ("cais/mmlu") or a local folder with a hub-style README.md whose YAML
    front matter declares the configs and data files.
    """
    try:
        import datasets as hf_datasets
    except ImportError as err:  # pragma: no cover - datasets is a declared dependency
        raise DatasetError(
            "the Hugging Face `datasets` package is needed to read from the hub; "
            "`pip install datasets`, or pass data_dir=... (or set LAYERCAL_DATA_DIR) "
            "to a local copy of the data."
        ) from err
    try:
        ds = hf_datasets.load_dataset(repo, config, split=split)
    except Exception as err:  # the library raises many unrelated types (network, split, config)
        raise DatasetError(
            f"could not load {repo!r} (config {config!r}, split {split!r}) from the Hugging Face "
            f"hub: {type(err).__name__}: {err}. Without network access, pass data_dir=... or set "
            "LAYERCAL_DATA_DIR to a folder holding mmlu/ and truthfulqa/ (see "
            "../shared/data/README.md)."
        ) from err
    return {name: list(values) for name, values in ds.to_dict().items()}


def require_columns(columns: dict[str, list[Any]], needed: tuple[str, ...], repo: str) -> None:
    """Fail when a hub table lacks a column the loader reads."""
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DatasetError(
            f"hub dataset {repo!r} lacks column(s) {missing}; found {sorted(columns)}. "
            "Check hub_repo=... points at a copy with the original layout."
        )
