"""The VLM: every registered encoder + a projector + several causal LLMs, through the processor, generate and pipelines.

Parametrised over `vlm_encoders.PARADIGMS`: a paradigm without an entry in `ENCODERS` fails here, so no
encoder lands without working inside the VLM. Tiny LLMs and a tokenizer trained on the fly; no downloads.
"""

import pytest
import torch

from encoder_tests import random_image, run_without_package
from test_deepencoder import DeepEncoderContract
from test_navit import NaViTContract
from test_sam import SAMContract
from test_vit import ViTContract
from tiny_models import tiny_tokenizer
from vlm_encoders import PARADIGMS, VisionLanguageConfig, VisionLanguageModel, VisionLanguageProcessor

ENCODERS = {"vlmenc_vit": ViTContract, "vlmenc_navit": NaViTContract, "vlmenc_sam": SAMContract,
            "vlmenc_deepencoder": DeepEncoderContract}
LLMS = {
    "llama": dict(model_type="llama", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
    "qwen2": dict(model_type="qwen2", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2),
    # Qwen2-VL's LLM: M-RoPE, position ids from the image grids; only for encoders that give grids
    "qwen2_vl_text": dict(model_type="qwen2_vl_text", hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2,
                          rope_parameters={"rope_type": "default", "mrope_section": [2, 2, 2], "rope_theta": 1e4}),
}
GRID_ONLY_LLMS = {"qwen2_vl_text"}
PAIRS = [(p, llm) for p in PARADIGMS for llm in LLMS if llm not in GRID_ONLY_LLMS or p == "vlmenc_navit"]
SIZES = [(45, 61), (30, 30), (61, 45)]
# DeepEncoder (Gundam) tiles images above 640 px: the second image, in the two-image prompt, gets 2 x 2 tiles
PARADIGM_SIZES = {"vlmenc_deepencoder": [(45, 61), (700, 900), (61, 45)]}


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
    with torch.no_grad():  # image features as large as the text embeddings, so that images steer the generation
        for name, p in model.projector.named_parameters():
            if name.endswith("weight"):
                p.normal_(0.0, p.shape[1] ** -0.5)
        for name, p in model.vision_tower.named_parameters():
            if name.endswith(("image_newline", "view_separator")):
                p.normal_(0.0, 1.0)
    processor = VisionLanguageProcessor(contract.make_processor(vision), tokenizer)
    return model, processor


def prompts(n_images_per_prompt=(1, 2), paradigm=None):
    sizes = PARADIGM_SIZES.get(paradigm, SIZES)
    texts, images, seed = [], [], 0
    for n in n_images_per_prompt:
        texts.append("<|user|>" + "<image>" * n + "Describe the image.<|assistant|>")
        images.append([random_image(*sizes[(seed + i) % len(sizes)], seed=seed + i) for i in range(n)])
        seed += n
    return texts, images


def test_every_paradigm_has_a_vlm_test():
    assert set(PARADIGMS) <= set(ENCODERS)


@pytest.mark.parametrize("paradigm, llm", PAIRS)
def test_forward_loss_and_labels(paradigm, llm):
    model, processor = build(paradigm, llm)
    texts, images = prompts(paradigm=paradigm)
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
    texts, images = prompts((1,), paradigm)
    a = processor(images=images, text=texts, return_tensors="pt")
    b = processor(images=[[random_image(*SIZES[0], seed=99)]], text=texts, return_tensors="pt")
    with torch.no_grad():
        la, lb = model(**a).logits, model(**b).logits
    first_image = int((a["input_ids"][0] == processor.image_token_id).nonzero()[0])
    torch.testing.assert_close(la[0, :first_image], lb[0, :first_image])  # causal: nothing before the image moves
    assert (la[0, -1] - lb[0, -1]).abs().max() > 1e-4


@pytest.mark.parametrize("paradigm, llm", PAIRS)
def test_generate_with_cache_batching_and_decoding_strategies(paradigm, llm):
    model, processor = build(paradigm, llm)
    texts, images = prompts((1, 2), paradigm)
    if paradigm in PARADIGM_SIZES:  # the beam-search check below must cover tiles
        assert processor(images=images, text=texts, return_tensors="pt")["image_tiles"].any()
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
    assert sampled.shape == (2, batch["input_ids"].shape[1] + 4)
    # beam search repeats each prompt with its own images (the second prompt has two): batch == alone
    beam_kwargs = dict(max_new_tokens=4, num_beams=3, num_return_sequences=2, do_sample=False,
                       pad_token_id=processor.tokenizer.pad_token_id)
    beams = model.generate(**batch, **beam_kwargs)
    assert beams.shape == (4, batch["input_ids"].shape[1] + 4)
    for i in range(2):
        alone = processor(images=[images[i]], text=[texts[i]], return_tensors="pt")
        assert torch.equal(model.generate(**alone, **beam_kwargs)[:, -4:], beams[2 * i: 2 * i + 2, -4:])
    text_only = processor(text=["<|user|>Describe the image.<|assistant|>"], return_tensors="pt")
    assert model.generate(**text_only, **kwargs).shape[1] == text_only["input_ids"].shape[1] + 6
    assert processor.batch_decode(cached[:, -6:], skip_special_tokens=True)[0] is not None


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_beam_expansion_repeats_each_prompts_own_images(paradigm):
    """What beam search and num_return_sequences feed the model: every copy of a prompt carries that prompt's images.

    Checked on the prefill logits, not on generated text: with transformers' default expansion a prompt alone is
    expanded just as wrongly as in a batch, so batch-versus-alone generation could not tell.
    """
    model, processor = build(paradigm)
    texts, images = prompts((1, 2), paradigm)
    batch = processor(images=images, text=texts, return_tensors="pt")
    input_ids, expanded = model._expand_inputs_for_generation(
        3, False, batch["input_ids"], **{k: v for k, v in batch.items() if k != "input_ids"})
    with torch.no_grad():
        logits = model(input_ids=input_ids, **expanded).logits[:, -1]  # (2 * 3, vocab)
        for i in range(2):
            alone = model(**processor(images=[images[i]], text=[texts[i]], return_tensors="pt")).logits[0, -1]
            for copy in range(3):
                torch.testing.assert_close(logits[3 * i + copy], alone, atol=1e-4, rtol=1e-4)


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
    with pytest.raises(Exception, match="only the native-resolution encoder"):
        build("vlmenc_vit", llm="qwen2_vl_text")


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


def test_llava_with_converted_weights_matches_transformers(record_parity):
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
    record_parity("vlm", "LlavaForConditionalGeneration", "logits: CLIP ViT (3 layers) + MLP projector + Llama "
                  "(2 layers), converted weights", (got - expected).abs().max().item())
    assert (got - expected).abs().max() <= 1e-4, (got - expected).abs().max()


@pytest.mark.parametrize("paradigm", list(PARADIGMS))
def test_remote_code_for_the_whole_vlm(paradigm, tmp_path):
    """The saved VLM (config, model, processor, image processor) loads in a process that cannot import the package."""
    from vlm_encoders import PARADIGMS as registry

    model, processor = build(paradigm)
    type(model.config).register_for_auto_class()
    type(model).register_for_auto_class("AutoModelForImageTextToText")
    type(processor).register_for_auto_class()
    type(processor.image_processor).register_for_auto_class()
    assert type(processor.image_processor) is registry[paradigm][2]
    folder = tmp_path / "vlm"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    image = random_image(*SIZES[0])
    image.save(tmp_path / "image.png")
    text = "<|user|><image>Describe the image.<|assistant|>"
    batch = processor(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        torch.save({"logits": model(**batch).logits, "ids": batch["input_ids"]}, tmp_path / "expected.pt")
    run_without_package(f"""
        import PIL.Image, torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        model = AutoModelForImageTextToText.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        expected = torch.load({str(tmp_path / 'expected.pt')!r})
        batch = processor(images=[PIL.Image.open({str(tmp_path / 'image.png')!r})], text=[{text!r}], return_tensors="pt")
        assert torch.equal(batch["input_ids"], expected["ids"])
        with torch.no_grad():
            assert torch.equal(model(**batch).logits, expected["logits"])
        out = model.generate(**batch, max_new_tokens=3, do_sample=False)
        assert out.shape[1] == batch["input_ids"].shape[1] + 3
    """, tmp_path)


def test_from_encoder_and_llm_folders(tmp_path):
    """The issue's entry point: an encoder folder + any causal LM folder whose tokenizer has no image token."""
    from transformers import LlamaConfig, LlamaForCausalLM, pipeline

    from tiny_models import tiny_tokenizer
    from vlm_encoders import ViTVisionModel

    contract = ViTContract()
    encoder = ViTVisionModel(contract.tiny_config()).eval()
    encoder.save_pretrained(tmp_path / "encoder")
    contract.make_processor(encoder.config).save_pretrained(tmp_path / "encoder")
    tokenizer = tiny_tokenizer()
    plain = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, bos_token="<s>", eos_token="</s>",
                                unk_token="<unk>")  # no pad token and no image token, like many base LLMs
    plain.save_pretrained(tmp_path / "llm")
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, vocab_size=len(plain)))
    llm.save_pretrained(tmp_path / "llm")

    vlm = VisionLanguageModel.from_encoder_and_llm(str(tmp_path / "encoder"), str(tmp_path / "llm"))
    proc = VisionLanguageProcessor.from_encoder_and_llm(str(tmp_path / "encoder"), str(tmp_path / "llm"))
    assert vlm.config.image_token_id == proc.image_token_id
    assert vlm.language_model.get_input_embeddings().num_embeddings > proc.image_token_id
    for name, tensor in encoder.state_dict().items():
        assert torch.equal(vlm.vision_tower.state_dict()[name], tensor), name
    inputs = proc(images=[random_image(45, 61)], text=["<image>\nDescribe the image."], return_tensors="pt")
    out = vlm.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4
    vlm.save_pretrained(tmp_path / "vlm")
    proc.save_pretrained(tmp_path / "vlm")
    generate = pipeline("image-text-to-text", model=str(tmp_path / "vlm"))
    assert generate(images=random_image(30, 30), text="<image>Describe", max_new_tokens=2)
    features = pipeline("image-feature-extraction", model=str(tmp_path / "encoder"))
    assert features(random_image(30, 30), return_tensors=True).shape == (1, 50, 32)


def test_navit_with_an_mrope_llm_matches_qwen2_vl(record_parity):
    """NaViT + Qwen2-VL's M-RoPE LLM against `Qwen2VLForConditionalGeneration`: logits at prefill, and greedy
    generation with the KV cache (decode positions continue from each row's M-RoPE delta), left-padded batch."""
    from transformers import Qwen2VLForConditionalGeneration

    from tiny_models import tiny_qwen2_vl_config
    from vlm_encoders import NaViTImageProcessor, convert_qwen2_vl

    hf_config = tiny_qwen2_vl_config(image_token_id=120, vision_start_token_id=121, vision_end_token_id=122)
    torch.manual_seed(0)
    theirs = Qwen2VLForConditionalGeneration(hf_config).eval()
    encoder = convert_qwen2_vl(theirs.model.visual)
    config = VisionLanguageConfig(vision_config=encoder.config.to_dict(), text_config=hf_config.text_config.to_dict(),
                                  projector="identity", image_token_id=120)
    ours = VisionLanguageModel(config).eval()
    ours.vision_tower.load_state_dict(encoder.state_dict())
    ours.language_model.model.load_state_dict(theirs.model.language_model.state_dict())
    ours.language_model.lm_head.load_state_dict(theirs.lm_head.state_dict())

    images = [random_image(60, 90, 0), random_image(56, 56, 1), random_image(120, 40, 2)]
    batch = NaViTImageProcessor()(images, return_tensors="pt")
    counts = (batch["image_grid_thw"].prod(-1) // 4).tolist()
    rows = [[5, 121] + [120] * counts[0] + [122, 6, 7, 121] + [120] * counts[1] + [122, 8],
            [9, 10, 11, 121] + [120] * counts[2] + [122, 12]]
    length = max(map(len, rows))
    ids = torch.zeros(2, length, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, length - len(row):], mask[i, length - len(row):] = torch.tensor(row), 1
    inputs = dict(input_ids=ids, attention_mask=mask, **batch)
    with torch.no_grad():
        expected = theirs(**inputs, mm_token_type_ids=(ids == 120).int()).logits
        got = ours(**inputs).logits
    valid = mask.bool()
    delta = (got[valid] - expected[valid]).abs().max().item()
    print(f"max |delta| logits vs Qwen2VLForConditionalGeneration: {delta:.2e}")
    assert delta <= 1e-4
    record_parity("vlm", "Qwen2VLForConditionalGeneration", "prefill logits: NaViT + M-RoPE LLM, a left-padded "
                  "batch of 2 prompts with 3 images", delta)
    kwargs = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    theirs_out = theirs.generate(**inputs, mm_token_type_ids=(ids == 120).int(), **kwargs)
    assert torch.equal(ours.generate(**inputs, **kwargs), theirs_out)
