"""Extraction benchmark (issue 6): `layercal extract` against the bare forward pass, the loop
most researchers write, and the peers (TransformerLens, nnsight).

    .venv/bin/python -m bench.extract --n 128                      # SmolLM2-135M on the CPU
    .venv/bin/python -m bench.extract --model random:llama-3-8b    # GPU: Llama-3-8B shapes
    .venv/bin/python -m bench.extract --shots 5 --n 32             # few-shot: prefix reuse

All variants see the same model, prompts (MMLU test, drawn across all subjects with a fixed seed)
and batch size. Each run of a variant is its own subprocess, so peak RSS is per variant; repeats
are interleaved (A B C A B C) to cancel machine drift, and medians are reported. Model loading is
never timed. Variants:

- ``bare``: the decoder only (``model.base_model``: no capture, no unembedding, no writing) on
  exactly the batches extract uses (longest first, cut by batch size and token budget,
  ``extract.forward.batching``), tokenised beforehand — the floor for this approach; ``bare-sorted``: the
  same on plain length-sorted batches of ``--batch-size`` (what the peers' ``-sorted`` variants
  get); ``bare-unsorted`` (opt-in): on batches in dataset order;
- ``layercal``: :func:`extract.run.extract` end to end into a fresh store (dataset, tokenise,
  forward, capture, lens extras, self-check, compress, write);
- ``--shots K`` (issue 13): ``layercal`` on K-shot prompts of ``--n`` questions of each of
  ``--subjects`` (default world_religions,formal_logic; a seeded sample per subject), against
  ``layercal-full`` (the same prompts with ``--no-prefix-reuse``) and ``layercal-zeroshot``
  (the same questions zero-shot, the memory reference); the JSON adds ``prefix_reuse_vs_full``
  (wall-clock ratio, full over reuse) and ``peak_rss_reuse_vs_zeroshot``;
- ``naive``: ``output_hidden_states=True`` on unsorted, right-padded batches, full logits, last
  token gathered afterwards, ``np.save``;
- ``transformerlens[-sorted]``: ``TransformerBridge.run_with_cache`` restricted to the residual
  hooks, ``nnsight[-sorted]``: ``trace`` + ``.save()`` of each block's last-token output; both
  under ``torch.no_grad``, given layercal's token ids or prompts, in dataset order or in plain
  length-sorted batches of ``--batch-size``, and ``np.save`` at the end.

The last line of output is one JSON object (``layercal_vs_bare``, ``layercal_vs_naive``,
``layercal_vs_best_peer``, ``peak_rss_vs_bare``, ``prompts_per_s``, per-variant figures).

One file per variant family: :mod:`~bench.extract.inputs` (the model, prompts and batches every
variant shares, the timed loop), :mod:`~bench.extract.bare` (``bare*``, ``naive``),
:mod:`~bench.extract.peers` (TransformerLens, nnsight), :mod:`~bench.extract.layercal`
(``layercal*``), :mod:`~bench.extract.variants` (the names and the child side),
:mod:`~bench.extract.compare` (the parent side: interleave, compare, report).
"""
