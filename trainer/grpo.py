"""``groundcot train grpo``: GRPO with the GRPO-SIF rewards on TRL's GRPOTrainer."""
from __future__ import annotations

import logging

from trainer.config import GrpoJob
from trainer.data import grpo_dataset
from trainer.models import freeze_vision, load_model, load_processor, lora_config
from trainer.rewards import OpenAIJudge, select
from trainer.sft import precision_flags
from trainer.summary import write_summary

log = logging.getLogger("groundcot")


def run_grpo(job: GrpoJob) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    dataset = grpo_dataset(job.data)
    processor = load_processor(job.model)
    model = load_model(job.model, job.train.precision, job.init_adapter)
    if job.freeze_vision:
        log.info("froze %d vision tensors", freeze_vision(model))
    judge = OpenAIJudge(**job.grpo.judge.model_dump()) if job.grpo.judge else None
    rewards, weights = select(job.grpo.rewards, job.grpo.progress_bonus, judge)
    t, g = job.train, job.grpo
    vllm = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": g.vllm_server_base_url} if g.use_vllm else {}
    args = GRPOConfig(
        output_dir=job.output_dir, learning_rate=t.learning_rate, num_train_epochs=t.epochs, max_steps=t.max_steps,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.grad_accum,
        gradient_checkpointing=t.gradient_checkpointing, logging_steps=t.logging_steps, save_steps=t.save_steps,
        seed=t.seed, report_to="none", num_generations=g.num_generations, beta=g.beta,
        max_completion_length=g.max_completion_length, temperature=g.temperature, reward_weights=weights,
        **vllm, **precision_flags(t.precision))
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=lora_config(job.lora, job.freeze_vision))
    trainer.train(resume_from_checkpoint=job.resume_from_checkpoint)
    trainer.save_model(job.output_dir)
    processor.save_pretrained(job.output_dir)
    return write_summary(job.output_dir, job, trainer, len(dataset))
