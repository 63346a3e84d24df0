"""Singular directions of the effective unembedding, and its null space (methods.md section 4).

The effective unembedding maps the direction of a final-normed residual to logits, with the
final norm's gain folded in, and (``center_vocab``, the default) without the logit shift common to
every token, which changes no probability::

    RMSNorm:    W̃ = P_V · W_U · diag(offset + γ)
    LayerNorm:  W̃ = P_V · W_U · diag(γ) · C,    C = I − 11ᵀ/d  (the centring projector)

P_V = I − 11ᵀ/V subtracts from every column its mean over the vocabulary (TransformerLens's
``center_unembed``, the processing Stolfo et al. 2024 used). Without it the top singular direction
of SmolLM2-135M (σ = 1020, cosine 0.999 with the mean row of W_U) is a uniform shift of all
logits, which would count as "large" although no probability sees it. LayerNorm subtracts the
mean of h before anything else, so the component of h along 1 never reaches the logits;
right-multiplying by C states that exactly (W̃ 1 = 0: 1/√d is a right singular vector with σ = 0);
it equals subtracting from each row its mean over the hidden axis. The norm's and the lm_head's
biases add constants and do not enter.

SVD W̃ = U Σ Rᵀ, σ descending; the null space N_k is spanned by the k columns of R of smallest σ
— for LayerNorm, leaving out the last one: 1/√d is exactly null, but the norm removes it from h
anyway, so counting it in N_k would make a k = 1 ablation a no-op on the logits and every N_k
one real direction short. For LayerNorm the SVD is taken of W̃ restricted to 1⊥ (W̃Q, Q a
(d, d − 1) orthonormal basis of 1⊥ from a Householder reflection), and R = [QR', 1/√d] with
σ = 0 last: every other column is orthogonal to 1 to rounding, whatever the spectrum. The
right factors come from the R factor of a QR decomposition (W̃ = QR, R = U'ΣRᵀ): as accurate as an
SVD of W̃ — W̃ᵀW̃ would square the condition number — without forming any (V, d) factor; or from
dask's tall-skinny QR over vocabulary chunks (``method="dask"``, out of core).

Results are cached as ``<store>.derived/svd-<w_u_sha256[:16]>-<norm_sha256[:8]>[-raw].npz``
next to a local store (``-raw``: without ``center_vocab``); for remote, read-only or in-memory
stores in ``$LAYERCAL_CACHE_DIR/derived/`` (default ``~/.cache/layercal/derived/``). The norm
fingerprint is part of the name because W̃ depends on the norm's gain as well as on W_U.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from numpy.typing import NDArray

from analyze.lens.store import norm_spec_of
from layercal import format as fmt
from layercal.lens import NormSpec

Method = Literal["auto", "scipy", "dask"]
CACHE_VERSION = 3  # 2: center_vocab; 3: LayerNorm's 1/√d exact, last, and outside N_k
DASK_ABOVE_BYTES = 4 << 30  # "auto": W̃ larger than this (float64) goes through dask


@dataclass(frozen=True)
class UnembedSVD:
    """Singular values and right singular vectors of W̃ for one model.

    ``s``: (d,) singular values, descending. ``r``: (d, d), column i the right singular vector of
    ``s[i]``. ``w_u_sha256``/``norm_sha256`` identify the W_U and final norm they came from.
    """

    s: NDArray[np.float64]
    r: NDArray[np.float64]
    w_u_sha256: str
    norm_sha256: str
    norm_kind: str
    center_vocab: bool = True
    path: str | None = None

    @property
    def hidden(self) -> int:
        return int(self.r.shape[0])

    @property
    def n_exact_null(self) -> int:
        """Directions left out of N_k: 1 for LayerNorm (1/√d, the last column of R), else 0."""
        return 1 if self.norm_kind == "layernorm" else 0

    @property
    def candidates(self) -> int:
        """How many directions N_k can hold: d, less the exactly-null one of LayerNorm."""
        return self.hidden - self.n_exact_null

    @property
    def null_singular_values(self) -> NDArray[np.float64]:
        """σ of the directions N_k is taken from, descending ((candidates,))."""
        return self.s[: self.candidates]

    def null_basis(self, k: int) -> NDArray[np.float64]:
        """(d, k) orthonormal basis of N_k, the k directions of smallest σ (k = 0: (d, 0)),
        never LayerNorm's exactly-null 1/√d."""
        end = self.candidates
        return self.r[:, end - _check_k(k, end) : end]

    def top_basis(self, k: int) -> NDArray[np.float64]:
        """(d, k) orthonormal basis of the k directions of largest σ."""
        return self.r[:, : _check_k(k, self.hidden)]

    def null_share(self, v: NDArray[np.floating], k: int) -> NDArray[np.float64]:
        """‖R_kᵀ v‖ / ‖v‖ over the last axis: (..., d) -> (...); 0 for a zero vector."""
        return subspace_share(v, self.null_basis(k))


EXACT_NULL_NOTE = (
    "LayerNorm: 1/sqrt(d) is exactly null (the norm subtracts the mean of h) and is left out "
    "of N_k; the smallest sigma of the other directions come first"
)


def default_k(hidden: int) -> int:
    """methods.md default: k = round(0.01 d), at least 1 (Stolfo et al.: 40 for d = 4096)."""
    return max(1, round(0.01 * hidden))


def _check_k(k: int, d: int) -> int:
    if not 0 <= int(k) <= d:
        raise ValueError(f"k = {k} is outside 0..{d} (the directions N_k can be taken from)")
    return int(k)


def subspace_share(v: NDArray[np.floating], basis: NDArray[np.floating]) -> NDArray[np.float64]:
    """Share of each vector in span(basis): ‖Bᵀv‖/‖v‖; v (..., d), basis (d, k) orthonormal."""
    x = np.asarray(v, np.float64)
    num = np.linalg.norm(x @ np.asarray(basis, np.float64), axis=-1)
    den = np.linalg.norm(x, axis=-1)
    return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def effective_unembedding(
    w_u: NDArray[np.floating], spec: NormSpec, center_vocab: bool = True
) -> NDArray[np.float64]:
    """W̃ (V, d) float64 from W_U (V, d) and the final norm (see the module docstring)."""
    w = np.asarray(w_u, np.float64) * (np.asarray(spec.weight, np.float64) + spec.offset)
    if spec.kind == "layernorm":
        w = w - w.mean(axis=1, keepdims=True)  # W · C, C = I − 11ᵀ/d
    if center_vocab:
        w = w - w.mean(axis=0, keepdims=True)  # P_V · W
    return w


def _householder(v: NDArray[np.floating]) -> tuple[NDArray[np.float64], float]:
    """(u, c) with H = I − c·uuᵀ the reflection that maps e_d to the unit vector ``v``."""
    x = np.asarray(v, np.float64)
    u = -x
    u[-1] += 1.0
    nu = float(u @ u)
    return u, (0.0 if nu < 1e-30 else 2.0 / nu)


def complement_basis(v: NDArray[np.floating]) -> NDArray[np.float64]:
    """(d, d − 1) orthonormal basis of the hyperplane orthogonal to the unit vector ``v`` (d,):
    the first d − 1 columns of the Householder reflection that maps e_d to ``v``."""
    u, c = _householder(v)
    return (np.eye(u.size) - c * np.outer(u, u))[:, :-1]


def _on_complement(w: NDArray[np.float64], v: NDArray[np.floating]) -> NDArray[np.float64]:
    """W · complement_basis(v), (V, d − 1), as a rank-one update: O(V·d), not O(V·d²)."""
    u, c = _householder(v)
    return (w - np.outer(c * (w @ u), u))[:, :-1]


def exact_null(kind: str, d: int) -> NDArray[np.float64] | None:
    """The exactly-null unit direction of W̃ for a norm of ``kind``: 1/√d for LayerNorm."""
    return np.full(d, 1.0 / np.sqrt(d)) if kind == "layernorm" else None


def svd_of(
    w_tilde: NDArray[np.floating],
    method: Method = "auto",
    chunk_rows: int = 8192,
    null: NDArray[np.floating] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Singular values (d,) descending and right singular vectors (d, d, as columns) of (V, d).

    ``null``: a unit vector (d,) known to be exactly null (LayerNorm's 1/√d): the SVD is of W̃
    on its orthogonal complement, and ``null`` is appended as the last column with σ = 0.
    """
    w = np.asarray(w_tilde, np.float64)
    if null is not None:
        q = complement_basis(null)
        s, r = svd_of(_on_complement(w, null), method, chunk_rows)
        vec = np.asarray(null, np.float64)[:, None]
        return np.append(s, 0.0), np.ascontiguousarray(np.hstack([q @ r, vec]))
    if method == "auto":
        method = "dask" if w.nbytes > DASK_ABOVE_BYTES else "scipy"
    if method == "scipy":
        import scipy.linalg as sl  # slow import; only needed here

        r_factor = sl.qr(w, mode="r", check_finite=False)[0][: w.shape[1]]
        _, s, vt = sl.svd(r_factor, check_finite=False)
    elif method == "dask":
        import dask.array as da

        _, s_d, vt_d = da.linalg.svd(da.from_array(w, chunks=(chunk_rows, -1)))
        s, vt = da.compute(s_d, vt_d)
    else:
        raise ValueError(f"method must be 'auto', 'scipy' or 'dask', got {method!r}")
    return np.asarray(s, np.float64), np.ascontiguousarray(np.asarray(vt, np.float64).T)


def norm_fingerprint(spec: NormSpec) -> str:
    """sha256 of what of the final norm enters W̃: kind, offset and gain."""
    h = hashlib.sha256(f"{spec.kind}|{spec.offset!r}".encode())
    h.update(np.ascontiguousarray(spec.weight, np.float32).tobytes())
    return h.hexdigest()


def w_u_fingerprint(ds: xr.Dataset) -> str:
    """The store's ``identity.w_u_sha256``, or the sha256 of its W_U when not recorded."""
    ident = ds.attrs.get("layercal", {}).get("identity", {})
    if ident.get("w_u_sha256"):
        return str(ident["w_u_sha256"])
    return fmt.sha256_bytes(np.asarray(ds["W_U"].values, np.float32))


def user_cache_dir() -> Path:
    """``$LAYERCAL_CACHE_DIR/derived`` (default ``$XDG_CACHE_HOME/layercal/derived``)."""
    root = os.environ.get("LAYERCAL_CACHE_DIR")
    if not root:
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(base) / "layercal")
    return Path(root) / "derived"


def sidecar_dir(store: str | os.PathLike[str] | None) -> Path | None:
    """``<store>.derived`` for a local store path; None for URLs and unknown sources."""
    if store is None:
        return None
    text = os.fspath(store).rstrip("/")
    if "://" in text or not text:
        return None
    return Path(text + ".derived")


def _candidates(ds: xr.Dataset, cache_dir: str | os.PathLike[str] | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir)]
    side = sidecar_dir(ds.encoding.get("source"))
    return [p for p in (side, user_cache_dir()) if p is not None]


def _load(path: Path, w_u_sha: str, norm_sha: str, center_vocab: bool) -> UnembedSVD | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            ok = (
                int(z["version"]) == CACHE_VERSION
                and str(z["w_u_sha256"]) == w_u_sha
                and str(z["norm_sha256"]) == norm_sha
                and bool(z["center_vocab"]) == center_vocab
            )
            if not ok:
                return None
            kind = str(z["norm_kind"])
            return UnembedSVD(z["s"], z["r"], w_u_sha, norm_sha, kind, center_vocab, str(path))
    except (OSError, KeyError, ValueError):
        return None  # unreadable or partial cache entry: recompute


def _save(res: UnembedSVD, folder: Path, name: str) -> str | None:
    """Write atomically; returns the path, or None when the folder is not writable."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.{os.getpid()}.tmp.npz"
        np.savez(
            tmp,
            s=res.s,
            r=res.r,
            w_u_sha256=res.w_u_sha256,
            norm_sha256=res.norm_sha256,
            norm_kind=res.norm_kind,
            center_vocab=res.center_vocab,
            version=CACHE_VERSION,
        )
        os.replace(tmp, folder / name)
    except OSError:
        return None
    return str(folder / name)


def unembed_svd(
    ds: xr.Dataset,
    *,
    method: Method = "auto",
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    center_vocab: bool = True,
) -> UnembedSVD:
    """The SVD of the store's effective unembedding, from the cache when there.

    ``ds``: a store from ``open_store``. ``cache_dir``: where to read/write the cache instead of
    next to the store (falling back to the user cache dir). ``cache=False``: always recompute.
    """
    spec = norm_spec_of(ds)
    w_u_sha, norm_sha = w_u_fingerprint(ds), norm_fingerprint(spec)
    name = f"svd-{w_u_sha[:16]}-{norm_sha[:8]}{'' if center_vocab else '-raw'}.npz"
    folders = _candidates(ds, cache_dir)
    if cache:
        for folder in folders:
            hit = _load(folder / name, w_u_sha, norm_sha, center_vocab)
            if hit is not None:
                return hit
    w_tilde = effective_unembedding(np.asarray(ds["W_U"].values), spec, center_vocab)
    d = w_tilde.shape[1]
    s, r = svd_of(w_tilde, method, null=exact_null(spec.kind, d))
    res = UnembedSVD(s, r, w_u_sha, norm_sha, spec.kind, center_vocab)
    if cache:
        for folder in folders:
            where = _save(res, folder, name)
            if where is not None:
                return replace(res, path=where)
    return res
