"""bench/extract/inputs.py: the batches every variant runs, and the random models' shapes."""

from __future__ import annotations

import torch

from bench.extract import inputs as bench


def test_sorted_batches_follow_extract_blocks():
    lengths = [3, 9, 1, 9, 5, 2, 7]
    # blocks of 4: [0..3] sorted longest first (ties by index), then [4..6]
    assert bench.sorted_batches(lengths, 2, 4) == [[1, 3], [0, 2], [6, 4], [5]]
    assert bench.unsorted_batches(7, 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert bench.padded_tokens(lengths, [[1, 3], [0, 2]]) == 2 * 9 + 2 * 3


def test_random_shapes_are_the_real_configs():
    import transformers as tf

    with torch.device("meta"):
        m1 = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**bench.RANDOM_SHAPES["llama-3.2-1b"])
        )
        m8 = tf.AutoModelForCausalLM.from_config(
            tf.LlamaConfig(**bench.RANDOM_SHAPES["llama-3-8b"])
        )
    n1 = sum(p.numel() for p in m1.parameters())  # tied embeddings counted once
    n8 = sum(p.numel() for p in m8.parameters())
    assert n1 == 1_235_814_400 and n8 == 8_030_261_248
