"""Tiny random Hugging Face models, one per covered architecture, built from configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

VOCAB = 96


def configs() -> dict[str, Any]:
    import transformers as tf

    common = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=256,
        pad_token_id=0,
    )
    return {
        "llama": tf.LlamaConfig(num_key_value_heads=2, **common),
        "mistral": tf.MistralConfig(num_key_value_heads=2, **common),
        "qwen2": tf.Qwen2Config(num_key_value_heads=2, **common),
        "gemma2": tf.Gemma2Config(
            num_key_value_heads=2,
            head_dim=16,
            final_logit_softcapping=5.0,
            query_pre_attn_scalar=16,
            **common,
        ),
        "gemma3_text": tf.Gemma3TextConfig(
            num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, **common
        ),
        "gemma": tf.GemmaConfig(num_key_value_heads=2, head_dim=16, **common),
        # the multimodal wrapper (model_type "gemma3"), with a vision tower of one tiny layer
        "gemma3": tf.Gemma3Config(
            text_config=dict(
                num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16, **common
            ),
            vision_config=dict(
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=1,
                num_attention_heads=2,
                image_size=28,
                patch_size=14,
            ),
            mm_tokens_per_image=4,
            boi_token_index=VOCAB - 3,
            eoi_token_index=VOCAB - 2,
            image_token_index=VOCAB - 1,
        ),
        "mixtral": tf.MixtralConfig(
            num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, **common
        ),
        "qwen3": tf.Qwen3Config(num_key_value_heads=2, head_dim=16, **common),
        "olmo2": tf.Olmo2Config(num_key_value_heads=2, **common),
        "phi": tf.PhiConfig(**common),
        "phi3": tf.Phi3Config(**common),
        "gpt2": tf.GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=3, n_head=4, n_positions=256),
        "gpt_neox": tf.GPTNeoXConfig(**common),
    }


ARCH_NAMES = [
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "olmo2",
    "gemma",
    "gemma2",
    "gemma3_text",
    "gemma3",
    "phi",
    "phi3",
    "gpt2",
    "gpt_neox",
]


def tiny_model(name: str, seed: int = 0, **text_config: Any) -> Any:
    """A random fp32 model of architecture ``name``; final norm given non-trivial parameters so
    that a lens that ignores them (or Gemma's ``1 + weight``) would be caught. ``text_config``:
    overrides of the (text) config, e.g. ``sliding_window=8``."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = configs()[name]
    config.tie_word_embeddings = False
    for key, value in text_config.items():
        setattr(config.get_text_config(), key, value)
    model = AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager"
    )
    from extract.model.arch import resolve

    res = resolve(model)
    with torch.no_grad():
        res.final_norm.weight.normal_(0.5 if res.norm.offset else 1.0, 0.3)
        if getattr(res.final_norm, "bias", None) is not None:
            res.final_norm.bias.normal_(0.0, 0.2)
        if res.unembed.bias is not None:
            res.unembed.bias.normal_(0.0, 0.5)
    return model.eval()


def save_tiny(model, folder: Path, tokenizer_src: str) -> Path:
    """Save a tiny random model with a real tokenizer as a local model folder."""
    from transformers import AutoTokenizer

    model.save_pretrained(str(folder))
    AutoTokenizer.from_pretrained(tokenizer_src).save_pretrained(str(folder))
    return folder
