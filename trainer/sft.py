"""``groundcot train sft``: supervised fine-tuning on groundcot rows with TRL's SFTTrainer."""
from __future__ import annotations

from groundcot.trainer.config import SftJob
from groundcot.trainer.data import sft_dataset
from groundcot.trainer.models import common_args, lora_config, prepare, train_and_save, with_device_precision
from groundcot.trainer.summary import write_summary


def run_sft(job: SftJob) -> dict:
    from trl import SFTConfig, SFTTrainer

    job = with_device_precision(job)
    dataset = sft_dataset(job.data)
    processor, model = prepare(job)
    args = SFTConfig(max_length=job.train.max_length, **common_args(job))
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=lora_config(job.lora, job.freeze_vision))
    train_and_save(trainer, job)
    return write_summary(job.output_dir, job, trainer, len(dataset))
