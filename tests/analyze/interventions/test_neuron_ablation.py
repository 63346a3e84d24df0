"""Closed-form neuron ablation against the reference lens on materialised residuals."""

from __future__ import annotations

import numpy as np
import pytest

from analyze.interventions.neuron_ablation import NeuronAblation, ablated_answer_logits
from analyze.lens import AnswerLens
from layercal.lens import NormSpec, lens_logits


def _case(kind: str, softcap: float | None = None, offset: float = 0.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, d, neurons, k = 40, 12, 9, 4
    weight = rng.normal(1.0, 0.3, d)
    bias = rng.normal(0, 0.1, d) if kind == "layernorm" else None
    spec = NormSpec(kind, weight, bias, 1e-5, offset=offset, softcap=softcap)
    w_ans = rng.normal(size=(k, d))
    b = rng.normal(size=k) if kind == "layernorm" else None
    lens = AnswerLens(spec, w_ans.astype(np.float32), None if b is None else b.astype(np.float32))
    h = rng.normal(size=(n, d)) * 3
    acts = rng.normal(size=(n, neurons)) * rng.uniform(0.2, 3, neurons)
    w_out = rng.normal(size=(neurons, d)) * rng.uniform(0.1, 2, (neurons, 1))
    return lens, h, acts, w_out


CASES = [("rmsnorm", None, 0.0), ("rmsnorm", 5.0, 1.0), ("layernorm", None, 0.0)]


@pytest.mark.parametrize(("kind", "softcap", "offset"), CASES)
def test_each_neuron_equals_the_lens_on_the_ablated_residual(kind, softcap, offset):
    lens, h, acts, w_out = _case(kind, softcap, offset)
    ab = NeuronAblation.of(lens, h, acts, w_out)
    z = ab.each(range(w_out.shape[0]))
    mu = acts.mean(axis=0)
    for i in range(w_out.shape[0]):
        h2 = h + (mu[i] - acts[:, i])[:, None] * w_out[i]
        ref = lens_logits(h2, lens.w, lens.spec, lens.b)
        np.testing.assert_allclose(z[i], ref, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(
            ablated_answer_logits(lens, h, ab.update([i])), ref, rtol=1e-12, atol=1e-12
        )


@pytest.mark.parametrize(("kind", "softcap", "offset"), CASES)
def test_direct_effect_freezes_the_scale(kind, softcap, offset):
    lens, h, acts, w_out = _case(kind, softcap, offset, seed=1)
    ab = NeuronAblation.of(lens, h, acts, w_out)
    z = ab.each([2, 5], frozen=True)
    spec, g = lens.spec, np.asarray(lens.spec.weight) + offset
    centre = (lambda x: x - x.mean(-1, keepdims=True)) if kind == "layernorm" else (lambda x: x)
    s = 1 / np.sqrt(np.mean(centre(h) ** 2, axis=-1, keepdims=True) + spec.eps)
    for j, i in enumerate([2, 5]):
        h2 = h + (acts[:, i].mean() - acts[:, i])[:, None] * w_out[i]
        normed = centre(h2) * s * g + (0 if spec.bias is None else spec.bias)
        ref = normed @ np.asarray(lens.w, np.float64).T + (0 if lens.b is None else lens.b)
        if softcap:
            ref = softcap * np.tanh(ref / softcap)
        np.testing.assert_allclose(z[j], ref, rtol=1e-9, atol=1e-9)
        joint = ablated_answer_logits(lens, h, ab.update([i]), frozen=True)
        np.testing.assert_allclose(joint, ref, rtol=1e-9, atol=1e-9)


def test_joint_update_and_noop():
    lens, h, acts, w_out = _case("rmsnorm")
    ab = NeuronAblation.of(lens, h, acts, w_out)
    mu = acts.mean(axis=0)
    want = (mu[1] - acts[:, 1])[:, None] * w_out[1] + (mu[4] - acts[:, 4])[:, None] * w_out[4]
    np.testing.assert_allclose(ab.update([1, 4]), want, rtol=1e-12)
    # every example already at the value it is set to: no change
    still = NeuronAblation.of(lens, h, acts, w_out, mean=acts[0])
    same = np.ones_like(acts) * acts[0]
    flat = NeuronAblation.of(lens, h, same, w_out)
    np.testing.assert_allclose(flat.each([0, 3]), np.stack([lens.logits(h)] * 2), rtol=1e-12)
    assert still.delta([0])[0, 0] == 0.0
    with pytest.raises(ValueError, match="shapes disagree"):
        NeuronAblation.of(lens, h, acts[:, :3], w_out)


POST_NORM = ("gemma2", "gemma3_text", "gemma3", "olmo2")  # the closed form does not apply


def _tiny_case(name):
    import torch

    from extract.forward.capture import run_batch
    from extract.forward.tokens import pad_batch
    from extract.model.arch import last_mlp, resolve
    from tests.extract.tiny_models import VOCAB, tiny_model

    class Tok:
        pad_token_id = 0

    model = tiny_model(name)
    res = resolve(model)
    mlp = last_mlp(model, res)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(1, VOCAB, (k,), generator=g).tolist() for k in (6, 11, 4, 9)]
    ids, mask = pad_batch(Tok(), seqs, "cpu", "left")
    r = run_batch(model, res, ids, mask, [5, 17, 33, 60], mlp=mlp)
    return model, res, mlp, seqs, r


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in __import__("tests.extract.tiny_models").extract.tiny_models.ARCH_NAMES
        if n != "mixtral" and n not in POST_NORM
    ],
)
def test_hooked_model_equals_the_closed_form_on_tiny_models(name):
    """Setting a neuron inside the model (a pre-hook on the down projection, final token only)
    gives the logits the closed form computes from the captured arrays: over the whole
    vocabulary (the reference lens on h + δ·w) and on the answer tokens (NeuronAblation)."""
    from extract.model.arch import unembedding_arrays
    from tests.analyze.interventions.hooked import hooked_logits

    model, res, mlp, seqs, r = _tiny_case(name)
    answer = [5, 17, 33, 60]
    w_u, bias = unembedding_arrays(res)
    lens = AnswerLens.from_arrays(res.norm, w_u, bias, np.array(answer))
    h, acts = r.resid[:, -1].double().numpy(), r.mlp_last.double().numpy()
    # the tiny models' activations are ~0.1: set each neuron to 3 (the closed form takes any
    # value, the mean by default) so that the change is far above the tolerance
    ab = NeuronAblation.of(lens, h, acts, mlp.w_out, mean=np.full(mlp.neurons, 3.0))
    norms = np.linalg.norm(mlp.w_out, axis=1)
    for i in (0, int(np.argmax(norms)), mlp.neurons - 1):
        mu = float(ab.mean[i])
        closed = ab.each([i])[0]
        for e, seq in enumerate(seqs):
            ref = hooked_logits(model, mlp.module, seq, i, mu)
            h2 = h[e] + (mu - acts[e, i]) * mlp.w_out[i]
            full = lens_logits(h2, w_u, res.norm, bias)
            np.testing.assert_allclose(full, ref, atol=1e-4, err_msg=f"{name} neuron {i}")
            np.testing.assert_allclose(closed[e], ref[answer], atol=1e-4, err_msg=name)
        assert np.abs(closed - lens.logits(h)).max() > 1e-2  # the ablation changed something


@pytest.mark.parametrize("name", POST_NORM)
def test_post_norm_models_record_it(name):
    """Gemma 2/3 and OLMo-2 normalise the MLP output: the closed form would be wrong there, so
    the capture records the norm (and `layercal neurons` declines the neurons)."""
    _, _, mlp, _, _ = _tiny_case(name)
    assert mlp.info["post_norm"].endswith("post_feedforward_layernorm")
