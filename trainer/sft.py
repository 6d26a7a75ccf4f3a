"""``groundcot train sft``: supervised fine-tuning on groundcot rows with TRL's SFTTrainer."""
from __future__ import annotations

import logging

from trainer.config import SftJob
from trainer.data import sft_dataset
from trainer.models import freeze_vision, load_model, load_processor, lora_config
from trainer.summary import write_summary

log = logging.getLogger("groundcot")


def precision_flags(precision: str) -> dict:
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def run_sft(job: SftJob) -> dict:
    from trl import SFTConfig, SFTTrainer

    dataset = sft_dataset(job.data)
    processor = load_processor(job.model)
    model = load_model(job.model, job.train.precision, job.init_adapter)
    if job.freeze_vision:
        log.info("froze %d vision tensors", freeze_vision(model))
    t = job.train
    args = SFTConfig(
        output_dir=job.output_dir, learning_rate=t.learning_rate, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum, max_length=t.max_length,
        gradient_checkpointing=t.gradient_checkpointing, logging_steps=t.logging_steps, save_steps=t.save_steps,
        seed=t.seed, report_to="none", **precision_flags(t.precision))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=lora_config(job.lora, job.freeze_vision))
    trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    trainer.save_model(job.output_dir)
    processor.save_pretrained(job.output_dir)
    return write_summary(job.output_dir, job, trainer, len(dataset))
