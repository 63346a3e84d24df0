"""Stores for the store-tool tests, built with layercal.testing from synthetic data.

300 examples x 5 depths x 32 hidden, vocabulary 64, 4 choices, blocks of 128 (3 blocks, the last
one partial), and helpers to damage and compare them.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import numcodecs
import numpy as np
import zarr

from layercal import format as fmt
from layercal.lens import NormSpec, lens_logits
from layercal.testing import example_meta, synthetic_store

N, L, D, V, K, BLOCK = 300, 5, 32, 64, 4, 128


IDS = [10, 11, 12, 13]


TEMPLATE = '{"name":"lm-eval-mmlu","item":"{question}\\nAnswer:"}'


LAYOUT = fmt.Layout(N, L, D, V, K, BLOCK)


BLOCK_ARRAYS = tuple(fmt.ACTIVATION_ARRAYS)


OLD_ARRAYS = ("resid", "model_logits", "lens_logits", "lens_lse")  # before lens_entropy


NEURONS = 48  # of the capture mlp_last (``build(..., capture=True)``)


def _data() -> dict:
    rng = np.random.default_rng(0)
    w_u = rng.normal(size=(V, D)).astype(np.float32)
    norm = NormSpec("rmsnorm", rng.normal(1.0, 0.2, D).astype(np.float32), None, 1e-5)
    blocks = []
    for b in range(LAYOUT.n_blocks):
        sl = LAYOUT.block_slice(b)
        resid = rng.normal(size=(sl.stop - sl.start, L, D)).astype(np.float32)
        z = lens_logits(resid, w_u[IDS], norm)
        full = lens_logits(resid, w_u, norm)
        lse = np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1)) + full.max(-1)
        p = np.exp(full - lse[..., None])
        blocks.append(
            {
                "resid": resid,
                "model_logits": z[:, -1],
                "lens_logits": z,
                "lens_lse": lse,
                "lens_entropy": -(p * np.log(p)).sum(-1),
            }
        )
    w_out = rng.normal(size=(NEURONS, D)).astype(np.float32)
    for blk in blocks:  # drawn after the rest: the other arrays are those of before the capture
        blk["mlp_last"] = rng.normal(size=(blk["resid"].shape[0], NEURONS)).astype(np.float32)
    return {"w_u": w_u, "norm": norm, "blocks": blocks, "w_out": w_out}


CAPTURE_INFO = {"block": L - 2, "where": "model.layers.3.mlp.down_proj input"}


DATA = _data()


def attrs(**identity_changes) -> dict:
    tsha = hashlib.sha256(TEMPLATE.encode()).hexdigest()
    identity = {
        "model": "tiny-test",
        "revision": None,
        "dtype": "float32",
        "template_sha256": tsha,
        "dataset": "mmlu",
        "split": "test",
        "dataset_sha256": "ab" * 32,
        "answer_token_ids": IDS,
        "w_u_sha256": fmt.sha256_bytes(DATA["w_u"]),
    }
    identity.update(identity_changes)
    provenance = {
        "model": {
            "model": identity["model"],
            "hub_id": "test/tiny",
            "dtype": "float32",
            "revision": None,
            "architecture": "LlamaForCausalLM",
        },
        "dataset": {
            "name": "mmlu",
            "split": "test",
            "category": "stem",
            "subjects": ["anatomy", "astronomy"],
            "n_examples": N,
            "content_sha256": identity["dataset_sha256"],
        },
        "template": {"name": "lm-eval-mmlu", "text": TEMPLATE, "sha256": tsha},
        "libraries": {"zarr": zarr.__version__, "numcodecs": numcodecs.__version__},
        "layercal_git_commit": "0123abc",
        "answer_tokens": [" A", " B", " C", " D"],
    }
    return {"identity": identity, "provenance": provenance, "runs": []}


def build(
    path: Path,
    blocks: Iterable[int],
    shard: str = "0/1",
    optional_arrays: Iterable[str] = fmt.OPTIONAL_ACTIVATION_ARRAYS,
    capture: bool = False,
    **identity_changes,
) -> Path:
    """A store at ``path`` with ``blocks`` written (finalized when all are).

    ``optional_arrays=()``: a store as layercal wrote them before ``lens_entropy``.
    ``capture``: with the capture ``mlp_last`` (``NEURONS`` neurons)."""
    meta = example_meta(
        np.arange(N) % 2,
        ["anatomy" if i % 2 else "astronomy" for i in range(N)],
        categories=["stem"] * N,
        example_ids=[f"mmlu/test/{i}" for i in range(N)],
        questions=[f"question {i}?" for i in range(N)],
        choices=[["w", "x", "y", "z"] if i % 3 else ["yes", "no"] for i in range(N)],
        n_tokens=np.arange(N) % 50 + 10,
    )
    a = attrs(**identity_changes)
    a["runs"] = [{"started": "2026-01-01T00:00:00", "host": f"host-{shard}", "shard": shard}]
    return synthetic_store(
        path,
        meta=meta,
        n_depth=L,
        w_u=DATA["w_u"],
        norm=DATA["norm"],
        answer_ids=np.array(IDS),
        blocks=lambda b, _: {
            k: v for k, v in DATA["blocks"][b].items() if capture or k != "mlp_last"
        },
        attrs=a,
        block=BLOCK,
        write=blocks,
        finalize={"finished": "2026-01-01T00:01:00"},
        optional_arrays=optional_arrays,
        mlp_last=fmt.MlpLastCapture(DATA["w_out"], CAPTURE_INFO) if capture else None,
    )


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def objects(store: Path) -> list[str]:
    return sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())


def flip(path: Path, pos: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


def all_values(store) -> dict[str, np.ndarray]:
    g = zarr.open_group(store, mode="r")
    return {k: np.asarray(g[k][...]) for k in sorted(g.array_keys())}


def assert_same_values(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        if a[k].dtype.kind == "f":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
        else:
            assert a[k].tolist() == b[k].tolist(), k


def problems_text(rep) -> str:
    return "\n".join(rep.lines())
