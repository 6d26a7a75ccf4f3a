"""``groundcot train grpo``: GRPO with the GRPO-SIF rewards on TRL's GRPOTrainer."""
from __future__ import annotations

from groundcot.trainer.config import GrpoJob
from groundcot.trainer.data import grpo_dataset
from groundcot.trainer.models import common_args, lora_config, prepare, train_and_save, with_device_precision
from groundcot.trainer.rewards.registry import make_judge, select
from groundcot.trainer.summary import write_summary


def run_grpo(job: GrpoJob) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    job = with_device_precision(job)
    dataset = grpo_dataset(job.data)
    processor, model = prepare(job)
    g = job.grpo
    judge = make_judge(g.reward_set, conn=g.judge) if g.judge else None
    rewards, weights = select(g.rewards, g.progress_bonus, judge, g.reward_set, job.data.depth_colormap)
    vllm = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": g.vllm_server_base_url} if g.use_vllm else {}
    args = GRPOConfig(num_generations=g.num_generations, beta=g.beta, max_completion_length=g.max_completion_length,
                      temperature=g.temperature, reward_weights=weights, **vllm, **common_args(job))
    trainer = GRPOTrainer(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                          processing_class=processor, peft_config=lora_config(job.lora, job.freeze_vision))
    train_and_save(trainer, job)
    return write_summary(job.output_dir, job, trainer, len(dataset))
