"""``groundcot train grpo``: GRPO on TRL's GRPOTrainer: single-turn with the GRPO-SIF rewards, or,
for a style that is not single-turn (mgpo, aperture), multi-turn rollouts through the style's
environment (``trainer.envs``) with the style's ``multiturn_reward_parts``."""
from __future__ import annotations

from groundcot.trainer.config import GrpoJob
from groundcot.trainer.data import grpo_dataset
from groundcot.trainer.models import (
    common_args,
    lora_config,
    prepare,
    train_and_save,
    with_device_precision,
    with_tool_template,
)
from groundcot.trainer.rewards.registry import make_judge, select, style_parts
from groundcot.trainer.summary import write_summary
from groundcot.transforms.styles import get_style

COUNTS = {"tools/calls_per_rollout": "calls", "tools/failed_calls_per_rollout": "failed",
          "tools/images_added_per_rollout": "images_added"}


def multiturn_style(styles: list[str]) -> str | None:
    """The job's multi-turn style, or None when every style is single-turn."""
    several = [s for s in styles if not get_style(s).single_turn]
    if several and len(styles) > 1:
        raise ValueError(f"data.styles: {', '.join(styles)}: a multi-turn style ({', '.join(several)}) "
                         "trains alone, one style per GRPO job")
    return several[0] if several else None


def logging_trainer(base):
    """``base`` (TRL's GRPOTrainer) that also logs, per step, each rollout's tool calls, failed calls
    (the environment's count: errors and MGPO's whole-image fallbacks) and images added."""

    class MultiTurnGRPOTrainer(base):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if self.environments:
                import torch

                mode = "train" if self.model.training else "eval"
                device = self.accelerator.device
                count = self.accelerator.gather(torch.tensor(float(len(self.environments)), device=device)).sum()
                for key, attr in COUNTS.items():
                    total = torch.tensor(float(sum(getattr(e, attr) for e in self.environments)), device=device)
                    self._metrics[mode][key].append((self.accelerator.gather(total).sum() / count).item())
            return out

    return MultiTurnGRPOTrainer


def run_grpo(job: GrpoJob) -> dict:
    from trl import GRPOConfig, GRPOTrainer

    job = with_device_precision(job)
    dataset = grpo_dataset(job.data)
    processor, model = prepare(job)
    g = job.grpo
    judge = make_judge(g.reward_set, conn=g.judge) if g.judge else None
    style, trainer_class, extra, more_args = multiturn_style(job.data.styles), GRPOTrainer, {}, {}
    weights = g.rewards
    if style:
        from groundcot.trainer.envs import environment

        processor = with_tool_template(processor)
        weights = g.multiturn_rewards or dict.fromkeys(style_parts(style, multiturn=True), 1.0)
        segment = {"segment_model": g.segment.model, "segment_fallback": g.segment.fallback,
                   "segment_device": g.segment.device}  # read by the environments that segment
        extra = {"environment_factory": environment(style, g.max_turns, **segment)}
        more_args = {"max_tool_calling_iterations": g.max_turns}
        trainer_class = logging_trainer(GRPOTrainer)
    rewards, weights = select(weights, g.progress_bonus, judge, g.reward_set, job.data.depth_colormap)
    vllm = {"use_vllm": True, "vllm_mode": "server", "vllm_server_base_url": g.vllm_server_base_url} if g.use_vllm else {}
    args = GRPOConfig(num_generations=g.num_generations, beta=g.beta, max_completion_length=g.max_completion_length,
                      temperature=g.temperature, reward_weights=weights, **vllm, **more_args, **common_args(job))
    trainer = trainer_class(model=model, reward_funcs=rewards, args=args, train_dataset=dataset,
                            processing_class=processor, peft_config=lora_config(job.lora, job.freeze_vision), **extra)
    train_and_save(trainer, job)
    return write_summary(job.output_dir, job, trainer, len(dataset))
