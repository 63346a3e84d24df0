"""Capture and lens on tiny random models of every covered architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from extract.forward.capture import run_batch
from extract.model.arch import ArchitectureError, resolve
from layercal.lens import lens_logits
from tests.extract.tiny_models import ARCH_NAMES, VOCAB, tiny_model

ANSWER_IDS = [5, 17, 33, 60]


class _Tok:
    pad_token_id = 0


def _prompts(seed: int = 1, n: int = 5) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, VOCAB, (int(k),), generator=g).tolist() for k in (7, 12, 3, 9, 12)[:n]]


def _run(model, seqs, side="left", batch_size=None):
    from extract.forward.tokens import pad_batch

    res = resolve(model)
    bs = batch_size or len(seqs)
    outs = []
    for s in range(0, len(seqs), bs):
        ids, mask = pad_batch(_Tok(), seqs[s : s + bs], "cpu", side)
        outs.append(run_batch(model, res, ids, mask, ANSWER_IDS))
    return {
        k: torch.cat([getattr(o, k) for o in outs]).numpy()
        for k in ("resid", "model_logits", "lens_logits", "lens_lse", "lens_entropy")
    }


@pytest.fixture(scope="module", params=ARCH_NAMES)
def arch_model(request):
    return request.param, tiny_model(request.param)


def test_capture_equals_independent_forward(arch_model):
    """Hook rows equal hidden states of an unpadded single-prompt forward (block inputs), and the
    final norm of the last depth equals HF's (post-norm) last hidden state."""
    name, model = arch_model
    seqs = _prompts()
    out = _run(model, seqs)
    res = resolve(model)
    L = res.n_depth
    assert out["resid"].shape == (len(seqs), L, 64)
    for i, s in enumerate(seqs):
        with torch.no_grad():
            ref = model(torch.tensor([s]), output_hidden_states=True)
        hs = ref.hidden_states
        for depth in range(L - 1):  # hidden_states[l] = input of block l
            np.testing.assert_allclose(
                out["resid"][i, depth], hs[depth][0, -1].numpy(), atol=2e-5, rtol=1e-4
            )
        normed = res.final_norm(torch.from_numpy(out["resid"][i, -1])).detach().numpy()
        np.testing.assert_allclose(normed, hs[-1][0, -1].numpy(), atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(
            out["model_logits"][i], ref.logits[0, -1, ANSWER_IDS].numpy(), atol=1e-4
        )


def test_numpy_lens_reproduces_model_logits(arch_model):
    """The stored-data lens (numpy, float64) at the last depth equals the model's logits over
    the whole vocabulary, and the torch lens extras (answer logits, log-sum-exp and entropy over
    the whole vocabulary, with lm_head bias (phi) and soft-cap (gemma2)) match the numpy lens at
    every depth."""
    name, model = arch_model
    res = resolve(model)
    seqs = _prompts()
    out = _run(model, seqs)
    w = res.unembed.weight.detach().numpy()
    b = None if res.unembed.bias is None else res.unembed.bias.detach().numpy()
    full = lens_logits(out["resid"], w, res.norm, b)  # (n, L, V)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            ref = model(torch.tensor([s])).logits[0, -1].numpy()
            np.testing.assert_allclose(full[i, -1], ref, atol=1e-4)
    np.testing.assert_allclose(out["lens_logits"], full[..., ANSWER_IDS], atol=1e-4)
    lse = np.log(np.exp(full - full.max(-1, keepdims=True)).sum(-1)) + full.max(-1)
    np.testing.assert_allclose(out["lens_lse"], lse, atol=1e-4)
    p = np.exp(full - lse[..., None])
    entropy = -(p * np.log(p)).sum(-1)
    assert entropy.min() > 0.5 and entropy.max() < np.log(VOCAB)  # not trivially 0 or uniform
    np.testing.assert_allclose(out["lens_entropy"], entropy, rtol=1e-4)
    if name == "gemma2":
        assert res.norm.softcap == 5.0 and res.norm.offset == 1.0
        assert np.abs(full).max() <= 5.0


def test_batch_size_and_padding_side_invariance(arch_model):
    name, model = arch_model
    seqs = _prompts()
    a = _run(model, seqs, "left")
    b = _run(model, seqs, "right")
    c = _run(model, seqs, "left", batch_size=1)
    for k in a:
        np.testing.assert_allclose(
            a[k], b[k], atol=1e-4, rtol=1e-4, err_msg=f"{name} {k} padding side"
        )
        np.testing.assert_allclose(
            a[k], c[k], atol=1e-4, rtol=1e-4, err_msg=f"{name} {k} batch size"
        )


def test_right_padding_runs_the_head_on_last_real_tokens_only(arch_model):
    """Under right padding the model's own head sees one row per prompt (its last real token),
    not every position, and its logits equal the unpadded single-prompt forward."""
    from extract.forward.tokens import pad_batch

    name, model = arch_model
    res = resolve(model)
    seqs = _prompts()
    seen: list[tuple[int, ...]] = []
    handle = res.unembed.register_forward_hook(lambda _m, args, _o: seen.append(args[0].shape))
    try:
        ids, mask = pad_batch(_Tok(), seqs, "cpu", "right")
        r = run_batch(model, res, ids, mask, ANSWER_IDS)
    finally:
        handle.remove()
    assert seen[0] == (len(seqs), 1, 64), name  # first call: the model's forward, not the lens
    with torch.no_grad():
        for i, s in enumerate(seqs):
            ref = model(torch.tensor([s])).logits[0, -1, ANSWER_IDS]
            np.testing.assert_allclose(r.model_logits[i].numpy(), ref.numpy(), atol=1e-4)


@pytest.mark.parametrize("peak", [0.0, 10.0, 25.0])
def test_entropy_keeps_its_relative_precision_when_peaked(peak):
    """float32 entropy of a softmax over 49,152 tokens, from uniform-ish to nearly one-hot
    (H ~ 1e-9 nats), within 1e-5 relative of float64, ties included; lse - sum p z, which
    cancels, is off by far more once the softmax is peaked. The log-sum-exp computed beside it
    is float64's within float32 rounding."""
    from extract.forward.capture import lse_entropy_

    z = torch.randn((2, 3, 49152), generator=torch.Generator().manual_seed(0))
    z[..., 7] = peak + 10.0
    z[1, 2, 9] = peak + 10.0  # two maximal entries
    z64 = z.double()
    ref = -(torch.softmax(z64, -1) * torch.log_softmax(z64, -1)).sum(-1)
    lse, got = lse_entropy_(z.clone())
    torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=0.0)
    torch.testing.assert_close(lse.double(), torch.logsumexp(z64, -1), rtol=1e-6, atol=1e-6)
    naive = (torch.logsumexp(z, -1) - (torch.softmax(z, -1) * z).sum(-1)).double()
    if peak >= 10.0:
        assert not torch.allclose(naive, ref, rtol=1e-2, atol=0.0)


def test_unknown_architecture_is_a_clear_error():
    import transformers as tf

    cfg = tf.OPTConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=1,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
    )
    model = tf.AutoModelForCausalLM.from_config(cfg)
    with pytest.raises(
        ArchitectureError, match=r"'opt'.*not covered.*final norm.*extract/model/arch.py"
    ):
        resolve(model)


def test_entry_that_does_not_match_names_the_missing_part(monkeypatch):
    from extract.model import arch

    model = tiny_model("llama")
    monkeypatch.setitem(
        arch.ARCHS, "llama", arch.ArchEntry("model.layers", "model.final_ln", "lm_head", "rmsnorm")
    )
    with pytest.raises(
        ArchitectureError, match=r"no final norm at 'model.final_ln'.*extract/model/arch.py"
    ):
        resolve(model)


def _mlp_hidden(mlp, x):
    """The MLP's hidden activation recomputed from its input ``x``, per family (written here
    independently of extract/arch.py)."""
    if hasattr(mlp, "gate_up_proj"):  # phi3: one fused projection
        gate, up = mlp.gate_up_proj(x).chunk(2, dim=-1)
        return up * mlp.activation_fn(gate)
    if hasattr(mlp, "gate_proj"):  # llama, mistral, qwen2/3, olmo2, gemma 1/2/3
        return mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x)
    if hasattr(mlp, "fc1"):  # phi
        return mlp.activation_fn(mlp.fc1(x))
    if hasattr(mlp, "c_fc"):  # gpt2
        return mlp.act(mlp.c_fc(x))
    return mlp.act(mlp.dense_h_to_4h(x))  # gpt_neox


DENSE = [n for n in ARCH_NAMES if n != "mixtral"]


@pytest.mark.parametrize("name", DENSE)
def test_mlp_last_is_the_down_projection_input_recomputed(name):
    """mlp_last equals the last block's MLP hidden activation recomputed from the MLP's input
    (an unpadded single-prompt forward), and mlp_last @ w_out (+ bias) is the MLP's output."""
    from extract.forward.tokens import pad_batch
    from extract.model.arch import last_mlp

    model = tiny_model(name)
    res = resolve(model)
    mlp = last_mlp(model, res)
    seqs = _prompts()
    ids, mask = pad_batch(_Tok(), seqs, "cpu", "left")
    got = run_batch(model, res, ids, mask, ANSWER_IDS, mlp=mlp).mlp_last.numpy()
    assert got.shape == (len(seqs), mlp.neurons) and mlp.w_out.shape == (mlp.neurons, 64)
    block_mlp = res.blocks[-1].mlp
    seen = {}
    handles = [
        block_mlp.register_forward_pre_hook(lambda _m, a: seen.update(x=a[0])),
        block_mlp.register_forward_hook(lambda _m, _a, o: seen.update(y=o)),
    ]
    try:
        for i, s in enumerate(seqs):
            with torch.no_grad():
                model(torch.tensor([s]))
                hidden = _mlp_hidden(block_mlp, seen["x"])[0, -1].numpy()
            np.testing.assert_allclose(got[i], hidden, atol=1e-5, rtol=1e-5, err_msg=name)
            bias = getattr(mlp.module, "bias", None)
            out = got[i] @ mlp.w_out + (0 if bias is None else bias.detach().numpy())
            np.testing.assert_allclose(out, seen["y"][0, -1].numpy(), atol=1e-5, err_msg=name)
    finally:
        for h in handles:
            h.remove()
    post = name in ("gemma2", "gemma3_text", "gemma3", "olmo2")
    assert (mlp.info["post_norm"] is not None) == post, name
    assert mlp.info["block"] == res.n_depth - 2 and mlp.info["where"].endswith(
        ("down_proj", "fc2", "c_proj", "dense_4h_to_h")
    )


def test_mlp_last_does_not_depend_on_padding_or_batch():
    from extract.forward.tokens import pad_batch
    from extract.model.arch import last_mlp

    model = tiny_model("qwen2")
    res = resolve(model)
    mlp = last_mlp(model, res)
    seqs = _prompts()
    outs = []
    for side, bs in (("left", 5), ("right", 5), ("left", 1)):
        parts = []
        for s in range(0, len(seqs), bs):
            ids, mask = pad_batch(_Tok(), seqs[s : s + bs], "cpu", side)
            parts.append(run_batch(model, res, ids, mask, ANSWER_IDS, mlp=mlp).mlp_last)
        outs.append(torch.cat(parts).numpy())
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(outs[0], outs[2], atol=1e-5, rtol=1e-4)
    ids, mask = pad_batch(_Tok(), seqs, "cpu", "left")
    assert run_batch(model, res, ids, mask, ANSWER_IDS).mlp_last is None  # not asked for


def test_a_mixture_of_experts_has_no_mlp_last():
    from extract.model.arch import last_mlp

    model = tiny_model("mixtral")
    with pytest.raises(ArchitectureError, match="not available for 'mixtral'.*mixture-of-experts"):
        last_mlp(model, resolve(model))


def test_mlp_last_of_a_bf16_model_is_stored_exactly():
    """In bfloat16 the activation is kept as the model computed it: float32 values whose low 16
    bits are zero, equal to the bf16 down projection's input."""
    from extract.forward.tokens import pad_batch
    from extract.model.arch import last_mlp

    model = tiny_model("qwen2").to(torch.bfloat16)
    res = resolve(model)
    mlp = last_mlp(model, res)
    assert mlp.info["dtype"] == "bfloat16"
    ids, mask = pad_batch(_Tok(), _prompts(), "cpu", "left")
    seen = {}
    handle = mlp.module.register_forward_pre_hook(lambda _m, a: seen.update(x=a[0]))
    try:
        got = run_batch(model, res, ids, mask, ANSWER_IDS, mlp=mlp).mlp_last
    finally:
        handle.remove()
    assert got.dtype == torch.float32 and seen["x"].dtype == torch.bfloat16
    assert not (got.numpy().view(np.uint32) & 0xFFFF).any()
    torch.testing.assert_close(got, seen["x"][:, -1].float(), rtol=0, atol=0)
