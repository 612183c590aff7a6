"""The VLM: every registered encoder + a projector + several causal LLMs, through the processor, generate and pipelines.

Parametrised over `vlm_encoders.PARADIGMS`: a paradigm without an entry in `ENCODERS` fails here, so no
encoder lands without working inside the VLM. Tiny LLMs and a tokenizer trained on the fly; no downloads.
"""

import pytest
import torch

from encoder_tests import random_image
from test_navit import NaViTContract
from test_vit import ViTContract
from tiny_models import tiny_tokenizer
from vlm_encoders import PARADIGMS, VisionLanguageConfig, VisionLanguageModel, VisionLanguageProcessor

ENCODERS = {"vlmenc_vit": ViTContract, "vlmenc_navit": NaViTContract}
LLMS = {
    "llama": dict(model_type="llama", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
    "qwen2": dict(model_type="qwen2", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
}
SIZES = [(45, 61), (30, 30), (61, 45)]


def build(paradigm, llm="llama", **config_kwargs):
    if paradigm not in ENCODERS:
        raise AssertionError(f"paradigm {paradigm} has no tiny encoder in tests/test_vlm.py: it must work in the VLM")
    contract = ENCODERS[paradigm]()
    vision = contract.tiny_config()
    tokenizer = tiny_tokenizer()
    text = dict(LLMS[llm], vocab_size=len(tokenizer) + 8, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    config = VisionLanguageConfig(vision_config=vision.to_dict(), text_config=text,
                                  **{"image_token_id": tokenizer.image_token_id, **config_kwargs})
    torch.manual_seed(0)
    model = VisionLanguageModel(config).eval()
    processor = VisionLanguageProcessor(contract.make_processor(vision), tokenizer)
    return model, processor


def prompts(n_images_per_prompt=(1, 2)):
    texts, images, seed = [], [], 0
    for n in n_images_per_prompt:
        texts.append("<|user|>" + "<image>" * n + "Describe the image.<|assistant|>")
        images.append([random_image(*SIZES[(seed + i) % len(SIZES)], seed=seed + i) for i in range(n)])
        seed += n
    return texts, images


def test_every_paradigm_has_a_vlm_test():
    assert set(PARADIGMS) <= set(ENCODERS)


@pytest.mark.parametrize("llm", list(LLMS))
@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_forward_loss_and_labels(paradigm, llm):
    model, processor = build(paradigm, llm)
    texts, images = prompts()
    batch = processor(images=images, text=texts, return_tensors="pt", return_labels=True)
    image_positions = batch["input_ids"] == processor.image_token_id
    counts = [processor.image_processor.get_number_of_image_tokens(im.height, im.width) for ims in images for im in ims]
    assert image_positions.sum().item() == sum(counts)
    assert (batch["labels"][image_positions] == -100).all() and (batch["labels"][batch["attention_mask"] == 0] == -100).all()
    model.train()
    out = model(**batch)
    assert out.logits.shape[:2] == batch["input_ids"].shape and torch.isfinite(out.loss)
    out.loss.backward()
    for part in ("vision_tower", "projector", "language_model"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters()), part


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_images_change_the_logits_only_through_their_positions(paradigm):
    """Features land exactly on the image positions: other images change the logits, text-only rows are unaffected."""
    model, processor = build(paradigm)
    texts, images = prompts((1,))
    a = processor(images=images, text=texts, return_tensors="pt")
    b = processor(images=[[random_image(*SIZES[0], seed=99)]], text=texts, return_tensors="pt")
    with torch.no_grad():
        la, lb = model(**a).logits, model(**b).logits
    first_image = int((a["input_ids"][0] == processor.image_token_id).nonzero()[0])
    torch.testing.assert_close(la[0, :first_image], lb[0, :first_image])  # causal: nothing before the image moves
    assert (la[0, -1] - lb[0, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_generate_with_cache_batching_and_decoding_strategies(paradigm):
    model, processor = build(paradigm)
    texts, images = prompts((1, 2))
    batch = processor(images=images, text=texts, return_tensors="pt")
    kwargs = dict(max_new_tokens=6, do_sample=False, pad_token_id=processor.tokenizer.pad_token_id)
    cached = model.generate(**batch, **kwargs)
    uncached = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached, uncached)  # the KV cache and the prefill-only images agree with full recompute
    for i in range(2):  # left padding: each prompt alone generates what it generates in the batch
        alone = processor(images=[images[i]], text=[texts[i]], return_tensors="pt")
        out = model.generate(**alone, **kwargs)
        assert torch.equal(out[0, -6:], cached[i, -6:])
    sampled = model.generate(**batch, max_new_tokens=4, do_sample=True, top_k=5,
                             pad_token_id=processor.tokenizer.pad_token_id)
    beams = model.generate(**batch, max_new_tokens=4, num_beams=3, do_sample=False,
                           pad_token_id=processor.tokenizer.pad_token_id)
    assert sampled.shape == beams.shape == (2, batch["input_ids"].shape[1] + 4)
    text_only = processor(text=["<|user|>Describe the image.<|assistant|>"], return_tensors="pt")
    assert model.generate(**text_only, **kwargs).shape[1] == text_only["input_ids"].shape[1] + 6
    assert processor.batch_decode(cached[:, -6:], skip_special_tokens=True)[0] is not None


def test_placeholder_and_feature_counts_must_agree():
    model, processor = build("vlmenc_vit")
    texts, images = prompts((1,))
    batch = processor(images=images, text=texts, return_tensors="pt")
    ids = batch["input_ids"].clone()
    ids[0, (ids[0] == processor.image_token_id).nonzero()[0]] = 5  # one image position lost
    with pytest.raises(ValueError, match=r"48 image-token positions but the images give 49 features"):
        model(input_ids=ids, pixel_values=batch["pixel_values"])


def test_processor_errors_before_any_compute():
    _, processor = build("vlmenc_vit")
    image = random_image(40, 40)
    with pytest.raises(ValueError, match=r"2 '<image>' placeholder\(s\) \(\[2\] per prompt\) but 1 image"):
        processor(images=[image], text="<image><image>hi")
    with pytest.raises(ValueError, match=r"0 '<image>' placeholder\(s\) .* but 1 image"):
        processor(images=[image], text="hi")
    with pytest.raises(ValueError, match="truncation"):
        processor(images=[image], text="<image>Describe the image.", truncation=True, max_length=10)
    with pytest.raises(ValueError, match="no token '<img>'"):
        VisionLanguageProcessor(processor.image_processor, processor.tokenizer, image_token="<img>")
    with pytest.raises(Exception, match="outside the LLM's vocabulary"):
        build("vlmenc_vit", image_token_id=10_000)
    with pytest.raises(Exception, match="registered encoders"):
        VisionLanguageConfig(vision_config={"model_type": "clip_vision_model"})
    with pytest.raises(Exception, match="projector='resampler' is not one of"):
        build("vlmenc_vit", projector="resampler")


def test_visual_token_budget_is_enforced_before_compute():
    _, processor = build("vlmenc_navit")
    big = random_image(200, 300)
    free = processor.image_processor.get_number_of_image_tokens(200, 300)
    fitted = VisionLanguageProcessor(processor.image_processor, processor.tokenizer, max_image_tokens=20)
    batch = fitted(images=[big], text="<image>hi", return_tensors="pt")
    used = int(batch["image_grid_thw"].prod(-1).sum()) // 4
    assert used <= 20 < free  # NaViT: max_pixels lowered to fit, counted the same way as the pixels
    assert (batch["input_ids"] == processor.image_token_id).sum() == used
    _, vit = build("vlmenc_vit")
    strict = VisionLanguageProcessor(vit.image_processor, vit.tokenizer, max_image_tokens=10)
    with pytest.raises(ValueError, match="49 visual tokens, over max_image_tokens=10"):
        strict(images=[big], text="<image>hi")
    per_sample = VisionLanguageProcessor(vit.image_processor, vit.tokenizer, max_image_tokens_per_sample=60)
    with pytest.raises(ValueError, match="prompt 0 has 2 image"):
        per_sample(images=[[big, big]], text=["<image><image>hi"])


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_save_load_auto_classes_and_pipeline(paradigm, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

    model, processor = build(paradigm)
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    loaded = AutoModelForImageTextToText.from_pretrained(tmp_path).eval()
    loaded_processor = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is VisionLanguageModel and type(loaded_processor) is VisionLanguageProcessor
    texts, images = prompts((1,))
    batch = processor(images=images, text=texts, return_tensors="pt")
    again = loaded_processor(images=images, text=texts, return_tensors="pt")
    for key in batch:
        assert torch.equal(batch[key], again[key]), key
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**again).logits)
    generate = pipeline("image-text-to-text", model=str(tmp_path))
    messages = [{"role": "user", "content": [{"type": "image", "image": images[0][0]},
                                             {"type": "text", "text": "Describe the image."}]}]
    result = generate(text=messages, max_new_tokens=3, do_sample=False)
    assert isinstance(result[0]["generated_text"], list | str)


def test_llava_with_converted_weights_matches_transformers():
    """ViT + MLP projector + Llama against `LlavaForConditionalGeneration`: the same logits from the same prompt."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from vlm_encoders.conversion_vlm import convert_llava

    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                              image_size=42, patch_size=14, projection_dim=32)
    text = LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, vocab_size=120)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=100, image_seq_length=9)
    torch.manual_seed(0)
    theirs = LlavaForConditionalGeneration(config).eval()
    ours = convert_llava(theirs).eval()
    assert ours.config.vision_config.feature_layer == -2 and ours.config.projector == "mlp2x_gelu"
    ids = torch.tensor([[1, 5, 6] + [100] * 9 + [7, 8, 9], [1, 11] + [100] * 9 + [12, 13, 14, 15]])
    pixels = torch.randn(2, 3, 42, 42)
    with torch.no_grad():
        expected = theirs(input_ids=ids, pixel_values=pixels).logits
        got = ours(input_ids=ids, pixel_values=pixels).logits
    print(f"max |delta| logits vs LlavaForConditionalGeneration: {(got - expected).abs().max().item():.2e}")
    assert (got - expected).abs().max() <= 1e-4, (got - expected).abs().max()
