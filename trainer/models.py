"""Model and processor loading, LoRA targets, freezing the vision tower."""
from __future__ import annotations

import logging

log = logging.getLogger("groundcot")
VISION = ("visual", "vision_tower", "vision_model", "multi_modal_projector")
PROJECTIONS = "q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj"


def image_only_processor(model_type: str):
    """A Qwen-VL processor without the video processor (which needs torchvision)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor

    base = {"qwen2_5_vl": Qwen2_5_VLProcessor, "qwen2_vl": Qwen2VLProcessor}.get(model_type)
    if base is None:
        return None

    class ImageOnlyProcessor(base):
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return ImageOnlyProcessor


def model_type(path: str) -> str:
    """The model family of a model folder, or of the base model of a LoRA adapter folder."""
    import json
    from pathlib import Path

    from transformers import AutoConfig

    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file() and not (Path(path) / "config.json").is_file():
        path = json.loads(adapter.read_text())["base_model_name_or_path"]
    return AutoConfig.from_pretrained(path).model_type


def load_processor(path: str):
    """``AutoProcessor``; where it cannot be built (no torchvision), an image-only one from its parts."""
    from transformers import AutoImageProcessor, AutoProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    try:
        processor = AutoProcessor.from_pretrained(path)
        if isinstance(processor, ProcessorMixin):
            return processor
    except (ImportError, AttributeError, OSError, TypeError, ValueError) as err:
        log.info("AutoProcessor unavailable for %s (%s); building an image-only processor", path, type(err).__name__)
    cls = image_only_processor(model_type(path))
    if cls is None:
        raise RuntimeError(f"cannot build a processor for {path}: install torchvision")
    tokenizer = AutoTokenizer.from_pretrained(path)
    return cls(image_processor=AutoImageProcessor.from_pretrained(path), tokenizer=tokenizer,
               chat_template=tokenizer.chat_template)


def device_precision(requested: str) -> str:
    """``requested``, with ``auto`` made bf16 on a CUDA GPU that supports it and fp32 elsewhere.

    bf16 or fp16 asked for where no CUDA GPU is present is a ValueError naming the fix.
    """
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        chosen = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
        log.info("train.precision auto -> %s (%s)", chosen, torch.cuda.get_device_name() if cuda else "no CUDA GPU")
        return chosen
    if requested in ("bf16", "fp16") and not cuda:
        raise ValueError(f"train.precision: {requested} needs a CUDA GPU and there is none here; "
                         "use auto (fp32 on CPU) or fp32")
    return requested


def with_device_precision(job):
    """The job with ``train.precision`` resolved for this machine (what summary.json then records)."""
    return job.model_copy(update={"train": job.train.model_copy(update={
        "precision": device_precision(job.train.precision)})})


def dtype_of(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def load_model(path: str, precision: str, init_adapter: str | None = None):
    """The model, with ``init_adapter`` (a LoRA adapter folder) merged in when given."""
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype_of(precision))
    if init_adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, init_adapter).merge_and_unload()
        log.info("merged adapter %s into %s", init_adapter, path)
    return model


def freeze_vision(model) -> int:
    """Stop gradients into the vision tower; returns how many tensors were frozen."""
    frozen = 0
    for name, param in model.named_parameters():
        if any(part in name for part in VISION):
            param.requires_grad = False
            frozen += 1
    return frozen


def lora_config(lora, freeze_vision_tower: bool):
    """peft's LoraConfig; with the vision tower frozen, adapters go on the language model only."""
    if not lora.enabled:
        return None
    from peft import LoraConfig

    if isinstance(lora.target_modules, list):
        targets = lora.target_modules
    elif lora.target_modules == "all" and not freeze_vision_tower:
        targets = rf".*\.({PROJECTIONS}|qkv|proj|fc1|fc2)$"
    else:  # a full-match regex: projections outside the vision tower
        targets = rf"^(?!.*({'|'.join(VISION)})).*\.({PROJECTIONS})$"
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets,
                      task_type="CAUSAL_LM")


class ModelMissing(RuntimeError):
    """The job's model is neither a local folder nor in the HF cache, and cannot be fetched (one line)."""


def check_model(name: str, key: str = "model", timeout_s: float = 5.0) -> None:
    """Raise ``ModelMissing`` unless ``name`` is a local folder, is in the HF cache, or the Hub answers.

    One quick look at the Hub instead of the libraries' own retries, which go on for minutes
    when it is unreachable.
    """
    import urllib.error
    import urllib.request
    from pathlib import Path

    from huggingface_hub import constants, try_to_load_from_cache

    if Path(name).expanduser().is_dir():
        return
    if name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ModelMissing(f"{key}: {name} is not a folder (a local model folder, or a Hub id like Org/Name)")
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return
    if constants.HF_HUB_OFFLINE:
        raise ModelMissing(f"{key}: {name} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
                           "HF_HUB_OFFLINE is set; download it where there is a network (`hf download "
                           f"{name}`) or give a local folder")
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout_s)
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise ModelMissing(f"{key}: {name} is not in the Hugging Face cache and the Hub ({constants.ENDPOINT}) "
                           f"cannot be reached ({reason}); download it where there is a network or give a "
                           "local folder") from None


def prepare(job):
    """The processor and the model of a training job, vision frozen if asked."""
    check_model(job.model)
    try:
        processor = load_processor(job.model)
        model = load_model(job.model, job.train.precision, job.init_adapter)
    except OSError as err:  # e.g. a Hub id that names no model: transformers' many-line message, first line
        raise ModelMissing(f"model: {job.model} cannot be loaded: {str(err).strip().splitlines()[0]}") from None
    if job.freeze_vision:
        log.info("froze %d vision tensors", freeze_vision(model))
    return processor, model


def common_args(job) -> dict:
    """The TRL config arguments SFT and GRPO share."""
    t = job.train
    return dict(output_dir=job.output_dir, learning_rate=t.learning_rate, num_train_epochs=t.epochs,
                max_steps=t.max_steps, per_device_train_batch_size=t.batch_size,
                gradient_accumulation_steps=t.grad_accum, gradient_checkpointing=t.gradient_checkpointing,
                logging_steps=t.logging_steps, save_steps=t.save_steps, seed=t.seed, report_to="none",
                bf16=t.precision == "bf16", fp16=t.precision == "fp16")


def train_and_save(trainer, job) -> None:
    trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    trainer.save_model(job.output_dir)
    trainer.processing_class.save_pretrained(job.output_dir)


def with_tool_template(processor):
    """The processor, with a chat template that renders tool calls and tool results (TRL's multi-turn
    rollouts need one). A Qwen-VL processor whose own template has no tools (Qwen2.5-VL's does not)
    gets TRL's Qwen3-VL template: the same vision tokens, Hermes ``<tool_call>`` JSON, and a response
    parser TRL knows. Any other model without one is a ValueError."""
    from trl.chat_template_utils import qwen3_vl_chat_template, supports_tool_calling

    if supports_tool_calling(processor):
        return processor
    vocab = processor.tokenizer.get_vocab()
    if not all(t in vocab for t in ("<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|im_start|>")):
        raise ValueError("the model's chat template cannot render tool calls, which multi-turn GRPO needs: "
                         "give a model whose processor's chat_template does")
    log.info("the chat template has no tool calls: using TRL's Qwen3-VL template (same vision tokens)")
    processor.chat_template = processor.tokenizer.chat_template = qwen3_vl_chat_template
    return processor
