"""Online steering: add α·s·d to the residual stream of the running model with a forward hook.

The hook sits at one depth (0: the input of the first block; l >= 1: the output of block l, as in
the store) and adds ``coef · vector`` at the last position (default; with left padding that is
every prompt's last token) or at every position. With last-position steering the prompt without
its last token is unaffected, so it runs once with a key-value cache; the α then run only the last
token against that cache — several α per step, as extra batch rows (``kv_sweep``) — so an extra α
costs a fraction of one token's forward pass instead of the whole prompt's.

Cache reuse, transformers 5: ``DynamicLayer.update`` concatenates (``torch.cat``) into a *new*
tensor and ``crop(-1)`` slices the added token off again, so with one α per step a cache of plain
``DynamicLayer``s is restored exactly by ``crop(-1)``; otherwise (several α per step, or sliding,
static or quantised caches) each step runs on a deep copy (``batch_repeat_interleave``-d for
several α). The model keyword is ``cache`` in transformers >= 5.x and ``past_key_values``
before; both are handled.

``make_sweeper`` wraps this as the :data:`analyze.interventions.steer.Sweeper` of a store: prompts rebuilt from
the store, logits on the answer tokens, and at the last depth a check that online equals offline
steering on the stored residual.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch
import zarr
from tqdm.auto import tqdm

from extract.forward.capture import hidden_of, position_ids
from extract.forward.prefix import cache_argument
from extract.forward.tokens import pad_batch, tokenize
from extract.model.arch import Resolved, resolve, unembedding_rows
from extract.online.store_prompts import offline_difference, store_prompts
from layercal import format as fmt
from layercal.lens import recorded_dtype, self_check_tolerance

Positions = Literal["last", "all"]


class SteeringCheckError(RuntimeError):
    """Online steering at the last depth disagrees with offline steering on the stored residual."""


class SteeringHook:
    """Context manager: while active, adds ``coef * vector`` at depth ``layer``.

    ``vector``: (d,) tensor (direction times scale). ``coef``: a number, or a (B,) tensor with
    one coefficient per batch row. ``coef`` = 0 leaves the model untouched (the hook returns
    None). ``active`` = False also disables it (e.g. for the cached prefix).
    """

    def __init__(
        self, res: Resolved, layer: int, vector: torch.Tensor, positions: Positions = "last"
    ) -> None:
        if not 0 <= layer < res.n_depth:
            raise ValueError(f"layer {layer} is outside the model's depths 0..{res.n_depth - 1}")
        if positions not in ("last", "all"):
            raise ValueError(f"positions must be 'last' or 'all', got {positions!r}")
        self.res, self.layer, self.positions = res, layer, positions
        self.vector = vector
        self.coef: float | torch.Tensor = 0.0
        self.active = True
        self._handle: Any = None

    def _off(self) -> bool:
        if not self.active:
            return True
        if isinstance(self.coef, torch.Tensor):
            return not bool(self.coef.any())
        return self.coef == 0.0

    def _add(self, hs: torch.Tensor) -> torch.Tensor:
        out = hs.clone()
        c = self.coef
        c = c[:, None].to(hs.device) if isinstance(c, torch.Tensor) else c  # (B, 1): per row
        v = (c * self.vector.to(hs.device)).to(dtype=hs.dtype)  # (d,) or (B, d)
        if self.positions == "last":
            out[:, -1] += v
        else:
            out += v[:, None] if v.ndim == 2 else v
        return out

    def __enter__(self) -> SteeringHook:
        if self.layer == 0:

            def pre(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if self._off():
                    return None
                if args:
                    return (self._add(args[0]), *args[1:]), kwargs
                return args, {**kwargs, "hidden_states": self._add(kwargs["hidden_states"])}

            self._handle = self.res.blocks[0].register_forward_pre_hook(pre, with_kwargs=True)
        else:

            def post(_m: Any, _args: Any, output: Any) -> Any:
                if self._off():
                    return None
                new = self._add(hidden_of(output))
                return new if isinstance(output, torch.Tensor) else (new, *output[1:])

            self._handle = self.res.blocks[self.layer - 1].register_forward_hook(post)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


@torch.inference_mode()
def forward_logits(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, answer_ids: Sequence[int]
) -> torch.Tensor:
    """One full forward (left padding, no cache): answer-token logits (B, K) at the last token."""
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids(attention_mask),
        use_cache=False,
        logits_to_keep=1,
    )
    return out.logits[:, -1, list(answer_ids)].float()


def _reusable(cache: Any) -> bool:
    layers = getattr(cache, "layers", None) or []
    return bool(layers) and all(type(x).__name__ == "DynamicLayer" for x in layers)


@torch.inference_mode()
def kv_sweep(
    model: Any,
    hook: SteeringHook,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    answer_ids: Sequence[int],
    coefs: Sequence[float],
    timings: dict[str, list[float]] | None = None,
    rows_per_step: int = 32,
) -> torch.Tensor:
    """Answer logits (A, B, K) for each coefficient, the prefix run once with a KV cache.

    Left-padded batch; ``hook`` must steer the last position. Each step runs the last token of
    g = max(1, rows_per_step // B) coefficients at once against g copies of the cache (batch
    rows b·g + i); with g = 1 the cache itself is used and cropped back after each α. Small
    batches are far from free on a CPU (a linear layer on 8 rows costs about what it does on
    64), so several α per step make each extra α cheaper. Equal to ``forward_logits`` under the
    hook with the same coefficient, up to float rounding. ``timings``: appends the seconds of
    the prefix pass to ``timings["prefix"]`` and of each step, per α, to ``timings["step"]``.
    """
    if hook.positions != "last":
        raise ValueError("KV reuse needs last-position steering; use a full forward for 'all'")
    from transformers import DynamicCache

    clock = time.perf_counter
    kw = cache_argument(model)
    cache = DynamicCache(config=model.config)
    prefix_mask = attention_mask[:, :-1]
    hook.active = False  # the prefix is not steered: its last position is not the prompt's
    t0 = clock()
    try:
        model(
            input_ids=input_ids[:, :-1],
            attention_mask=prefix_mask,
            position_ids=position_ids(prefix_mask),
            use_cache=True,
            logits_to_keep=1,
            **{kw: cache},
        )
    finally:
        hook.active = True
    if timings is not None:
        timings.setdefault("prefix", []).append(clock() - t0)
    b = input_ids.shape[0]
    g = max(1, rows_per_step // b)
    prefix_len = cache.get_seq_length()
    crop = g == 1 and _reusable(cache)
    last_pos = position_ids(attention_mask)[:, -1:]
    out = []
    for lo in range(0, len(coefs), g):
        t0 = clock()
        chunk = [float(c) for c in coefs[lo : lo + g]]
        n = len(chunk)
        step = cache if crop else copy.deepcopy(cache)
        if n > 1:
            step.batch_repeat_interleave(n)
        hook.coef = torch.tensor(chunk).repeat(b) if n > 1 else chunk[0]
        z = model(
            input_ids=input_ids[:, -1:].repeat_interleave(n, 0),
            attention_mask=attention_mask.repeat_interleave(n, 0),
            position_ids=last_pos.repeat_interleave(n, 0),
            use_cache=True,
            logits_to_keep=1,
            **{kw: step},
        ).logits
        out.append(z[:, -1, list(answer_ids)].float().reshape(b, n, -1).transpose(0, 1))
        if crop:
            cache.crop(-1)
            if cache.get_seq_length() != prefix_len:
                raise RuntimeError("the KV cache did not return to the prefix length after crop")
        if timings is not None:
            timings.setdefault("step", []).extend([(clock() - t0) / n] * n)
    hook.coef = 0.0
    return torch.cat(out)


def online_sweep(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    answer_ids: Sequence[int],
    *,
    layer: int,
    vector: np.ndarray,
    scale: float,
    alphas: Sequence[float],
    positions: Positions = "last",
    batch_size: int = 8,
    kv: bool = True,
) -> np.ndarray:
    """Answer logits (A, n, K) float64 of the prompts steered by α·s·d at depth ``layer``.

    ``kv``: reuse the prefix's KV cache (last-position steering only); else one full forward per
    α. Batches are formed from prompts of similar length (less padding).
    """
    res = resolve(model)
    device = next(model.parameters()).device
    vec = torch.as_tensor(np.asarray(vector, np.float64) * scale, dtype=torch.float32)
    seqs = tokenize(tokenizer, prompts)
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), i))
    out = np.empty((len(alphas), len(seqs), len(answer_ids)))
    bar = tqdm(
        total=len(seqs),
        desc=f"steer online at depth {layer}, {len(alphas)} α",
        unit="prompt",
        leave=False,
    )
    with SteeringHook(res, layer, vec, positions) as hook, bar:
        for s in range(0, len(order), batch_size):
            idx = order[s : s + batch_size]
            ids, mask = pad_batch(tokenizer, [seqs[i] for i in idx], device, "left")
            if kv and positions == "last":
                z = kv_sweep(model, hook, ids, mask, answer_ids, alphas)
            else:
                zs = []
                for a in alphas:
                    hook.coef = float(a)
                    zs.append(forward_logits(model, ids, mask, answer_ids))
                hook.coef = 0.0
                z = torch.stack(zs)
            out[:, idx] = z.double().cpu().numpy()
            bar.update(len(idx))
    return out


def make_sweeper(
    store: str,
    loaded: Any,
    *,
    layer: int,
    positions: Positions = "last",
    batch_size: int = 8,
    kv: bool = True,
) -> tuple[Callable[..., np.ndarray], dict[str, Any]]:
    """A Sweeper running ``loaded`` (a :class:`extract.model.load.LoadedModel`) on a store's prompts.

    Refuses a model whose unembedding is not the store's. Returns it and a record (model, dtype,
    the store's dtype, layer, positions, KV reuse, and ``max_abs_diff_vs_offline`` at the last
    depth, checked against the lens tolerance of the coarser dtype) it keeps updated. The α = 0
    baseline check at any depth is the analysis's (``analyze.interventions.steer_baseline``).
    """
    g = zarr.open_group(store, mode="r")
    info = fmt.check_format(g, store)
    res = resolve(loaded.model)
    if fmt.sha256_rows(unembedding_rows(res)[0]) != info["identity"].get("w_u_sha256"):
        raise ValueError(
            f"the model {loaded.provenance.get('model')!r} is not the one store {store} was "
            "extracted with (its unembedding differs). Pass the store's model to --model."
        )
    n_depth = int(info["layout"]["n_depth"])
    answer_ids = [int(x) for x in np.asarray(fmt.array(g, "answer_token_ids")[...])]
    dtype = str(loaded.provenance.get("dtype"))
    store_dtype = recorded_dtype(info)
    record: dict[str, Any] = {
        "model": loaded.provenance.get("model"),
        "dtype": dtype,
        "store_dtype": store_dtype or "float32",
        "layer": layer,
        "positions": positions,
        "kv_reuse": bool(kv and positions == "last"),
        "max_abs_diff_vs_offline": None,
    }

    def sweeper(rows: Any, vector: np.ndarray, scale: float, alphas: Sequence[float]) -> Any:
        prompts = store_prompts(g, rows, loaded.tokenizer)
        z = online_sweep(
            loaded.model,
            loaded.tokenizer,
            prompts,
            answer_ids,
            layer=layer,
            vector=vector,
            scale=scale,
            alphas=alphas,
            positions=positions,
            batch_size=batch_size,
            kv=kv,
        )
        if layer == n_depth - 1 and positions == "last":
            diff = offline_difference(g, rows, z, vector, scale, alphas)
            prev = record["max_abs_diff_vs_offline"] or 0.0
            record["max_abs_diff_vs_offline"] = max(prev, diff)
            # the lens bound of the coarser of the model's and the store's dtype
            tol = max(self_check_tolerance(dtype, z), self_check_tolerance(store_dtype, z))
            if not diff <= tol:
                raise SteeringCheckError(
                    f"online steering at the last depth differs from offline steering on the "
                    f"stored residual by {diff:.3g} (> {tol:.3g}): the hook, the store or the "
                    "model is not what it should be."
                )
        return z

    return sweeper, record


def model_sweeper(
    store: str,
    model: str,
    *,
    layer: int,
    dtype: str = "float32",
    device: str = "auto",
    positions: Positions = "last",
    batch_size: int = 8,
    kv: bool = True,
) -> tuple[Callable[..., np.ndarray], dict[str, Any]]:
    """:func:`make_sweeper` with ``model`` (a name, folder or ``.gguf``) loaded first: what
    ``layercal steer --online`` uses."""
    from extract.model.load import load_model

    loaded = load_model(model, dtype=dtype, device=device)  # type: ignore[arg-type]
    return make_sweeper(
        store, loaded, layer=layer, positions=positions, batch_size=batch_size, kv=kv
    )
