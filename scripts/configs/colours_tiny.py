"""A tiny VLM from scratch (ViT encoder, Llama LLM) learns to name the colour of a square it sees.

Smoke test and learning check on a CPU in a few minutes; nothing is downloaded:
    python scripts/train.py --config scripts/configs/colours_tiny.py
"""

VISION = dict(model_type="vlmenc_vit", hidden_size=64, intermediate_size=128, num_hidden_layers=2,
              num_attention_heads=4, image_size=32, patch_size=8)
IMAGE_PROCESSOR = dict(size={"height": 32, "width": 32}, do_center_crop=False, patch_size=8)
LLM = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2)


def get_config():
    return dict(
        scratch=dict(vision_config=VISION, text_config=LLM, image_processor=IMAGE_PROCESSOR),
        dataset="synthetic:colours",
        num_examples=2000,
        train="encoder,projector,llm",  # from scratch every part must learn
        learning_rate=2e-3,
        max_steps=200,
        per_device_train_batch_size=16,
        logging_steps=20,
        output_dir="out/colours_tiny",
    )
