"""Fine-tuning: scripts/train.py on Trainer, the parts that drive freezing / learning rates / LoRA, the collator,
learning on data whose answer is only in the image, resuming, and two gloo processes against one."""

import importlib.util
import io
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from vlm_encoders.synthetic import colour_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "scripts", "configs")
spec = importlib.util.spec_from_file_location("train_script", os.path.join(ROOT, "scripts", "train.py"))
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)


def run(tmp_path, *overrides, config="colours_tiny.py", callbacks=None):
    argv = ["--config", os.path.join(CONFIGS, config), f"output_dir={tmp_path}", "logging_steps=1", *overrides]
    return train.main(argv, callbacks=callbacks)


# ---- configuration ---------------------------------------------------------------------------------

def test_overrides_and_unknown_keys():
    config = train.load_config(os.path.join(CONFIGS, "colours_tiny.py"),
                               ["max_steps=7", "--freeze", "encoder,llm", "--lr_llm=1e-5", "resume=last"])
    assert (config["max_steps"], config["freeze"], config["lr_llm"], config["resume"]) == (7, "encoder,llm", 1e-5, "last")
    assert config["scratch"]["vision_config"]["model_type"] == "vlmenc_vit"  # the file's value, not the default
    with pytest.raises(ValueError, match=r"unknown config key\(s\) \['max_step'\].*valid keys: \[.*'max_steps'"):
        train.load_config(None, ["max_step=3"])
    with pytest.raises(ValueError, match="write key=value"):
        train.load_config(None, ["max_steps"])
    with pytest.raises(ValueError, match=r"unknown model part\(s\) \['vision'\]; the parts are \['encoder', 'projector', 'llm'\]"):
        train.trainable_parts({**train.DEFAULTS, "freeze": "vision"})
    assert train.trainable_parts({**train.DEFAULTS, "stage": 2, "freeze": "llm"}) == (["projector"], [])
    assert train.trainable_parts({**train.DEFAULTS, "stage": 2, "lora": "llm"}) == (["projector"], ["llm"])


def test_the_script_reports_bad_config_in_one_line(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--config",
                           os.path.join(CONFIGS, "colours_tiny.py"), "max_stepz=3"], capture_output=True, text=True)
    assert done.returncode != 0 and "error: unknown config key(s) ['max_stepz']" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_dataset_without_the_image_column_is_named(tmp_path):
    dataset = colour_dataset(4).rename_column("image", "picture")
    dataset.save_to_disk(str(tmp_path / "data"))
    with pytest.raises(ValueError, match=r"no column\(s\) \['image'\]; its columns are \['picture', 'question', 'answer'\]"):
        run(tmp_path / "out", f"dataset={tmp_path / 'data'}")


# ---- the parts ------------------------------------------------------------------------------------

def test_stage_1_trains_the_projector_alone_and_stores_it(tmp_path):
    summary = run(tmp_path, "max_steps=3", "train=''")  # train='' falls back to the stage: 1 -> projector only
    assert summary["train_parts"] == ["projector"]
    from vlm_encoders import VisionLanguageModel

    final = VisionLanguageModel.from_pretrained(tmp_path / "final")
    torch.manual_seed(0)  # the scratch model is rebuilt with the same seed: frozen parts must be untouched
    model, _ = train.build_model_and_processor(train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []))
    for name, tensor in final.state_dict().items():
        same = torch.equal(tensor, model.state_dict()[name])
        assert same == (not name.startswith("projector.")), name
    stored = load_file(tmp_path / "trained_parts.safetensors")
    assert stored and all(name.startswith("projector.") for name in stored)
    from vlm_encoders.training import load_parts

    assert load_parts(model, str(tmp_path / "trained_parts.safetensors")) == sorted(stored)  # the fresh model ...
    for name, tensor in final.state_dict().items():  # ... plus the parts file is the trained model
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_each_part_gets_its_own_learning_rate(tmp_path):
    from vlm_encoders.training import VLMTrainer, param_groups, set_trainable

    model, _ = train.build_model_and_processor(train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []))
    counts = set_trainable(model, "encoder,projector")
    assert counts["llm"][0] == 0 and counts["encoder"][0] == counts["encoder"][1] > 0
    groups = param_groups(model, {"encoder": 1e-5, "projector": 1e-3, "llm": 1.0}, weight_decay=0.1)
    assert {(g["part"], g["lr"], g["weight_decay"]) for g in groups} == {
        ("encoder", 1e-5, 0.1), ("encoder", 1e-5, 0.0), ("projector", 1e-3, 0.1), ("projector", 1e-3, 0.0)}
    assert sum(p.numel() for g in groups for p in g["params"]) == counts["encoder"][0] + counts["projector"][0]
    args = train.training_arguments({**train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []),
                                     "output_dir": str(tmp_path)})
    trainer = VLMTrainer(model=model, args=args, part_learning_rates={"encoder": 1e-5})
    optimizer = trainer.create_optimizer()
    assert {g["part"]: g["lr"] for g in optimizer.param_groups} == {"encoder": 1e-5, "projector": args.learning_rate}
    with pytest.raises(ValueError, match="unknown parts"):
        VLMTrainer(model=model, args=args, part_learning_rates={"vision": 1e-5})


def test_lora_on_the_llm_trains_adapters_and_saves_a_merged_model(tmp_path):
    pytest.importorskip("peft")
    summary = run(tmp_path, "max_steps=3", "stage=2", "train=''", "lora=llm", "lora_rank=4")
    assert summary["train_parts"] == ["projector"] and summary["lora_parts"] == ["llm"]
    from vlm_encoders import VisionLanguageModel

    final = VisionLanguageModel.from_pretrained(tmp_path / "final")  # a plain model: adapters merged
    assert not any("lora" in name for name in final.state_dict())
    model, _ = train.build_model_and_processor(train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []))
    changed = {n.split(".")[0] for n, t in final.state_dict().items() if not torch.equal(t, model.state_dict()[n])}
    assert changed == {"projector", "language_model"}  # the merged adapters moved the LLM; the encoder is untouched


# ---- the collator ---------------------------------------------------------------------------------

def test_collator_labels_only_the_answer_and_skips_broken_images():
    from vlm_encoders.training import VLMDataCollator, decode_image

    _, processor = train.build_model_and_processor(train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []))
    collator = VLMDataCollator(processor)
    rows = [colour_dataset(3, seed=1)[i] for i in range(3)]
    buffer = io.BytesIO()
    rows[0]["image"].save(buffer, format="PNG")
    broken = {"bytes": buffer.getvalue()[:200], "path": None}  # a truncated PNG
    examples = [{**rows[0], "image": decode_image(broken)}, rows[1], rows[2]]
    assert examples[0]["image"] is None
    batch = collator(examples)
    assert collator.skipped == 1 and batch["input_ids"].shape[0] == 2
    for row, example in zip(range(2), rows[1:]):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert processor.tokenizer.decode(labelled) == example["answer"] + processor.tokenizer.eos_token
    assert (batch["labels"][batch["input_ids"] == processor.image_token_id] == -100).all()
    # a batch where nothing decodes repeats the last good rows instead of stopping the run
    again = collator([{**rows[0], "image": None}])
    assert collator.skipped == 2 and torch.equal(again["input_ids"], batch["input_ids"])
    with pytest.raises(ValueError, match="placeholder"):
        VLMDataCollator(processor, prompt="{question}")


def test_collator_takes_several_images_per_row_and_the_chat_template():
    from vlm_encoders.training import VLMDataCollator

    _, processor = train.build_model_and_processor(train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), []))
    rows = [colour_dataset(3, seed=2)[i] for i in range(3)]
    pair = {"image": [rows[0]["image"], rows[1]["image"]], "question": "Which colours?", "answer": "red blue"}
    per_image = processor.image_processor.get_number_of_image_tokens(height=64, width=64)
    for prompt in ("<|user|><image>{question}<|assistant|>", "chat"):
        collator = VLMDataCollator(processor, prompt=prompt)
        batch = collator([pair, rows[2]])
        image_tokens = (batch["input_ids"] == processor.image_token_id).sum(-1).tolist()
        assert image_tokens == [2 * per_image, per_image] and batch["pixel_values"].shape[0] == 3
        labelled = batch["labels"][0][batch["labels"][0] != -100]
        assert processor.tokenizer.decode(labelled) == "red blue" + processor.tokenizer.eos_token
    assert collator.prompt_text("Q?", 2) == processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Q?"}]}],
        add_generation_prompt=True, tokenize=False)


def test_multi_image_rows_and_pretrained_folders_train(tmp_path):
    """encoder= + llm= (two pretrained folders, the LLM's tokenizer without an image token), a save_to_disk dataset
    whose rows hold two images each, the chat prompt."""
    import datasets
    from transformers import LlamaConfig, LlamaForCausalLM

    from tiny_models import tiny_tokenizer
    from vlm_encoders import ViTImageProcessor, ViTVisionConfig, ViTVisionModel

    config = train.load_config(os.path.join(CONFIGS, "colours_tiny.py"), [])
    ViTVisionModel(ViTVisionConfig(**{k: v for k, v in config["scratch"]["vision_config"].items()
                                      if k != "model_type"})).save_pretrained(tmp_path / "encoder")
    ViTImageProcessor(**config["scratch"]["image_processor"]).save_pretrained(tmp_path / "encoder")
    tokenizer = tiny_tokenizer()
    plain = tokenizer.__class__(tokenizer_object=tokenizer.backend_tokenizer, bos_token="<s>", eos_token="</s>",
                                unk_token="<unk>")
    plain.save_pretrained(tmp_path / "llm")
    LlamaForCausalLM(LlamaConfig(hidden_size=48, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                                 num_key_value_heads=2, vocab_size=len(plain))).save_pretrained(tmp_path / "llm")
    single = colour_dataset(16, seed=4)
    pairs = datasets.Dataset.from_dict(
        {"image": [[single[i]["image"], single[i + 1]["image"]] for i in range(0, 16, 2)],
         "question": ["What colours are the squares?"] * 8,
         "answer": [f"{single[i]['answer']} {single[i + 1]['answer']}" for i in range(0, 16, 2)]},
        features=datasets.Features({"image": datasets.List(datasets.Image()), "question": datasets.Value("string"),
                                    "answer": datasets.Value("string")}))
    pairs.save_to_disk(str(tmp_path / "pairs"))
    summary = train.main(["--config", os.path.join(CONFIGS, "colours_tiny.py"), "scratch=None",
                          f"encoder={tmp_path / 'encoder'}", f"llm={tmp_path / 'llm'}", f"dataset={tmp_path / 'pairs'}",
                          "prompt=chat", "stage=1", "train=''", "max_steps=2", "per_device_train_batch_size=4",
                          f"output_dir={tmp_path / 'out'}", "logging_steps=1"])
    assert summary["global_step"] == 2 and summary["train_parts"] == ["projector"] and summary["skipped_images"] == 0
    assert all(loss == loss for _, loss in summary["losses"])  # finite, not NaN


def test_undecodable_images_in_a_dataset_are_skipped_and_counted(tmp_path):
    import datasets

    dataset = colour_dataset(12, seed=3).cast_column("image", datasets.Image(decode=False))
    rows = dataset.to_dict()
    rows["image"][2] = {"bytes": b"not an image", "path": None}
    rows["image"][7] = {"bytes": rows["image"][7]["bytes"][:100], "path": None}
    datasets.Dataset.from_dict(rows, features=dataset.features).save_to_disk(str(tmp_path / "data"))
    summary = run(tmp_path / "out", f"dataset={tmp_path / 'data'}", "max_steps=3", "per_device_train_batch_size=4")
    assert summary["skipped_images"] == 2 and summary["global_step"] == 3


# ---- learning, resuming, several processes ----------------------------------------------------------

@pytest.mark.parametrize("config", ["colours_tiny.py", "colours_tiny_navit.py"])
def test_a_tiny_vlm_learns_what_only_the_image_shows(tmp_path, config):
    """200 steps from scratch; the colour is named only by the image. Held-out accuracy far above chance (1/6), and
    it falls back towards chance when each question comes with another example's image."""
    from transformers import AutoProcessor

    from vlm_encoders import VisionLanguageModel
    from vlm_encoders.training import answer_accuracy

    run(tmp_path, config=config)
    model = VisionLanguageModel.from_pretrained(tmp_path / "final")
    processor = AutoProcessor.from_pretrained(tmp_path / "final")
    held_out = [colour_dataset(96, seed=123)[i] for i in range(96)]
    accuracy = answer_accuracy(model, processor, held_out)
    shuffled = [{**row, "image": held_out[(i + 1) % 96]["image"]} for i, row in enumerate(held_out)]
    mismatched = answer_accuracy(model, processor, shuffled)
    print(f"{config}: held-out accuracy {accuracy:.3f}, with another example's image {mismatched:.3f}")
    assert accuracy >= 0.8 and mismatched <= 0.4, (accuracy, mismatched)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def test_resume_reaches_the_same_loss_as_an_uninterrupted_run(tmp_path):
    common = ["max_steps=16", "save_steps=8", "train=encoder,projector,llm", "per_device_train_batch_size=4",
              "num_examples=200"]
    whole = run(tmp_path / "whole", *common)
    stopped = run(tmp_path / "split", *common, callbacks=[StopAt(8)])
    assert stopped["global_step"] == 8 and (tmp_path / "split" / "checkpoint-8").is_dir()
    resumed = run(tmp_path / "split", *common, "resume=last")
    assert resumed["global_step"] == 16
    expected, got = dict(whole["losses"]), dict(resumed["losses"])
    assert got[16] == pytest.approx(expected[16], rel=1e-4, abs=1e-5), (got, expected)
    assert got[9] == pytest.approx(expected[9], rel=1e-4, abs=1e-5)  # the first step after the restart


def test_two_gloo_processes_match_one_with_the_same_global_batch(tmp_path):
    """torchrun, 2 CPU processes x 4 examples against 1 process x 8: the same losses and the same weights."""
    common = ["--config", os.path.join(CONFIGS, "colours_tiny.py"), "max_steps=4", "logging_steps=1",
              "train=encoder,projector,llm", "num_examples=64"]
    script = os.path.join(ROOT, "scripts", "train.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, script, *common, f"output_dir={tmp_path / 'one'}",
                          "per_device_train_batch_size=8"], capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29517", script, *common, f"output_dir={tmp_path / 'two'}", "per_device_train_batch_size=4",
                          "--backend", "gloo"], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    summaries = [json.loads((tmp_path / run_ / "train_summary.json").read_text()) for run_ in ("one", "two")]
    assert (summaries[1]["world_size"], summaries[1]["wrapped_as"]) == (2, "DistributedDataParallel")
    losses = [summary["losses"] for summary in summaries]
    print("one process:", losses[0], "\ntwo processes:", losses[1])
    assert [s for s, _ in losses[0]] == [s for s, _ in losses[1]] == [1, 2, 3, 4]
    for (_, a), (_, b) in zip(*losses):
        assert b == pytest.approx(a, rel=1e-3)
    weights = [load_file(tmp_path / run_ / "trained_parts.safetensors") for run_ in ("one", "two")]
    for name in weights[0]:
        torch.testing.assert_close(weights[1][name], weights[0][name], atol=1e-5, rtol=1e-4, msg=name)


def test_gradient_checkpointing_gives_the_same_losses(tmp_path):
    common = ["max_steps=3", "train=encoder,projector,llm", "per_device_train_batch_size=4", "num_examples=32"]
    plain = run(tmp_path / "plain", *common)
    checkpointed = run(tmp_path / "checkpointed", *common, "gradient_checkpointing=True")
    assert checkpointed["gradient_checkpointing"] and not plain["gradient_checkpointing"]
    for (_, a), (_, b) in zip(plain["losses"], checkpointed["losses"]):
        assert b == pytest.approx(a, rel=1e-5)


@pytest.mark.parametrize("paradigm", ["vlmenc_vit", "vlmenc_navit", "vlmenc_sam", "vlmenc_deepencoder"])
def test_fsdp_wraps_the_encoder_blocks_and_the_llm_layers(paradigm):
    """What Accelerate's FSDP (shipped config: TRANSFORMER_BASED_WRAP, no class list) wraps: the model's
    `_no_split_modules`, every name of which must exist in that model. Runs the real policy lookup; the sharded
    run itself needs GPUs (on CPU processes Accelerate falls back to DDP)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import FullyShardedDataParallelPlugin
    from test_vlm import build

    from vlm_encoders import PARADIGMS

    assert set(PARADIGMS) == {"vlmenc_vit", "vlmenc_navit", "vlmenc_sam", "vlmenc_deepencoder"}  # extend the list
    shipped = load_config_from_file(os.path.join(CONFIGS, "accelerate_fsdp.yaml"))
    assert shipped.distributed_type == "FSDP" and "fsdp_transformer_layer_cls_to_wrap" not in shipped.fsdp_config
    model, _ = build(paradigm)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap")
    plugin.set_auto_wrap_policy(model)
    wrapped = {cls.__name__ for cls in plugin.auto_wrap_policy.keywords["transformer_layer_cls"]}
    block = {"vlmenc_vit": "ViTEncoderLayer", "vlmenc_navit": "NaViTBlock", "vlmenc_sam": "SAMBlock",
             "vlmenc_deepencoder": "SAMBlock"}[paradigm]
    assert {block, "LlamaDecoderLayer"} <= wrapped
    present = {type(m).__name__ for m in model.modules()}
    assert wrapped <= present
