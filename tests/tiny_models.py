"""Tiny transformers reference models shared by several test files (random weights, no downloads)."""

from transformers import Qwen2VLConfig


def tiny_qwen2_vl_config(vision_width: int = 64, **overrides) -> Qwen2VLConfig:
    """A Qwen2-VL with a 1-layer 64-d LLM and a 2-block vision tower whose merger projects to the LLM width."""
    return Qwen2VLConfig(
        text_config=dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=64, vocab_size=128, bos_token_id=1, eos_token_id=2, pad_token_id=0,
                         rope_parameters={"rope_type": "default", "mrope_section": [4, 6, 6], "rope_theta": 1e6}),
        vision_config=dict(depth=2, embed_dim=vision_width, num_heads=4, hidden_size=64),
        **overrides,
    )


def tiny_tokenizer(vocab_size: int = 200):
    """A byte-level BPE trained on the fly (no downloads), with `<image>` as one special token, left padding."""
    from vlm_encoders.synthetic import train_tokenizer

    corpus = ["Describe the image.", "What colour is the square?", "A red square on a white page.",
              "The digit is seven.", "Compare the two pictures.", "yes no maybe blue green red"] * 20
    return train_tokenizer(corpus, vocab_size)
