"""Training job configs. Defaults are SIFThinker's settings for Qwen2.5-VL-7B
(REFERENCE.md section 2): SFT LoRA r=8, lr 1e-4, 3 epochs, cutoff 2048; GRPO N=8,
beta 0.04, LoRA r=64 alpha 128, lr 1e-5, completions up to 2048 tokens, vision frozen."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from groundcot.trainer.data import RL_DEPTH_IMAGE
from groundcot.transforms.teach.connection import Connection


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Data(Section):
    runs: list[str] = Field(min_length=1, description="groundcot output folders (local or bucket), each holding data/<style>/*.parquet.")
    styles: list[str] = Field(["sif"], description="Styles to train on.")
    sources: list[str] | None = Field(None, description="Keep only these sources (default: all).")
    splits: list[str] = Field(["train"], min_length=1, description="The runs' splits to train on (a test split "
                              "held out with split.test_fraction is for `groundcot eval`).")
    depth_image: bool = Field(False, description="SFT: give sif rows written without a depth image "
                              "(sif.depth_input off) one, rendered from the depth map and labelled as in SIF-50K. "
                              "Rows written with one always carry it.")
    rl_depth_image: bool = Field(RL_DEPTH_IMAGE, description="GRPO: show sif rows' depth image in the RL prompt too. Off as in "
                                 "GRPO-SIF (RGB only; the reward reads the depth map); the verl and trl exports "
                                 "follow the same switch (--rl-depth-image).")
    depth_colormap: str = Field("Spectral_r", description="The colour map for depth_image (a matplotlib name, or grey); "
                                "reward_set sifthinker reads the depth map as SIFThinker reads a depth image drawn with it.")
    limit: int | None = Field(None, ge=1, description="Use at most this many rows.")

    @field_validator("depth_colormap")
    @classmethod
    def _known_colormap(cls, name: str) -> str:
        from groundcot.schemas.depth import check_colormap

        return check_colormap(name)


class Lora(Section):
    enabled: bool = Field(True, description="Train LoRA adapters (peft) instead of all weights.")
    r: int = Field(8, ge=1, description="LoRA rank.")
    alpha: int = Field(16, ge=1, description="LoRA alpha.")
    dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout.")
    target_modules: Literal["language", "all"] | list[str] = Field(
        "language", description="language: the language model's attention and MLP projections; all: the "
                                "vision tower's too; or explicit module names.")


class Train(Section):
    learning_rate: float = Field(1e-4, gt=0, description="Peak learning rate.")
    epochs: float = Field(3.0, gt=0, description="Passes over the data.")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: run the epochs).")
    batch_size: int = Field(1, ge=1, description="Per-device batch size.")
    grad_accum: int = Field(8, ge=1, description="Gradient accumulation steps.")
    max_length: int = Field(2048, ge=16, description="SFT: sequences are cut at this many tokens.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the device supports it (a CUDA GPU with bf16), else fp32 (CPU). "
                            "bf16 and fp16 need a CUDA GPU.")
    gradient_checkpointing: bool = Field(True, description="Trade compute for memory.")
    logging_steps: int = Field(10, ge=1, description="Log losses and reward means every N steps.")
    save_steps: int = Field(500, ge=1, description="Save a checkpoint every N steps.")
    seed: int = Field(0, description="Random seed.")


class Judge(Connection):
    """The judge's endpoint: the same connection fields as the teacher's (e.g. its vLLM server)."""

    api_key_env: str | None = Field(None, description="Environment variable holding the key (never the key); "
                                    "null: none, as for a local vLLM.")
    timeout_s: float = Field(60.0, gt=0, description="Per-call timeout.")


class Segment(Section):
    """The SAM2 the aperture environment's ``segment`` tool prompts with its box: the pipeline's masks
    stage's model, loaded the same way (``transforms.masks``)."""

    model: str = Field("facebook/sam2.1-hiera-tiny", description="Hub id or local path of a SAM2 checkpoint "
                       "(the pipeline's masks.model).")
    fallback: Literal["none", "tiny_random"] = Field("none", description="tiny_random: a tiny random SAM2 where "
                                                     "the model cannot be loaded (smoke tests only).")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda when available.")


class Grpo(Section):
    num_generations: int = Field(8, ge=2, description="Completions per prompt (N).")
    beta: float = Field(0.04, ge=0, description="KL coefficient.")
    max_completion_length: int = Field(2048, ge=1, description="Tokens per completion.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the rollouts.")
    use_vllm: bool = Field(False, description="Generate with vLLM (TRL's server mode: start `trl vllm-serve` first).")
    vllm_server_base_url: str | None = Field(None, description="e.g. http://host:8000 (server mode).")
    rewards: dict[str, float] = Field(
        {"format": 1.0, "answer": 1.0, "box": 1.0, "depth": 1.0},
        description="Rewards and their weights (GRPO-SIF sums the four, unweighted). boxed_answer is "
                    "MGPO's binary answer reward; consistency is iVGR's, against the grounded twin; "
                    "aperture is the aperture style's (AGRPO-like, README).")
    reward_set: Literal["groundcot", "sifthinker"] = Field(
        "groundcot", description="sifthinker: GRPO-SIF's rewards as its code computes them (lenient format, "
        "graded judge score, progress bonus against the previous step's batch mean per prompt, depth credit "
        "on the unrounded box mean, missing depths uncounted); groundcot: the stricter variants (README, "
        "Training: reward sets).")
    progress_bonus: bool = Field(True, description="GRPO-SIF's answer bonus when a sample's score improves.")
    judge: Judge | None = Field(None, description="An LLM judge for answers that differ from the GT in wording.")
    max_turns: int = Field(3, ge=1, description="Multi-turn styles (mgpo, aperture): the most tool-calling turns "
                           "in a rollout (TRL's max_tool_calling_iterations) and tool calls the environment answers.")
    multiturn_rewards: dict[str, float] | None = Field(
        None, description="Multi-turn styles: rewards and weights (default: the style's multiturn_reward_parts, "
                          "weight 1: mgpo boxed_answer + mgpo_format, aperture agrpo; add grounding_iou for "
                          "MGPO's box against the GT).")
    segment: Segment = Field(Segment(), description="aperture: the SAM2 behind the segment tool.")

    @field_validator("rewards", "multiturn_rewards")
    @classmethod
    def _known_rewards(cls, weights: dict[str, float] | None) -> dict[str, float] | None:
        from groundcot.trainer.rewards.registry import PARTS

        if weights is None:
            return None
        if unknown := [n for n in weights if n not in PARTS]:
            raise ValueError(f"unknown reward {', '.join(unknown)} (known: {', '.join(PARTS)})")
        return weights


class Job(Section):
    model: str = Field("Qwen/Qwen2.5-VL-7B-Instruct", description="Hub id or local path.")
    output_dir: str = Field(description="Where checkpoints, the adapter and summary.json go.")
    init_adapter: str | None = Field(None, description="A LoRA adapter (e.g. the SFT output) merged into the "
                                        "model before training.")
    resume_from_checkpoint: bool | str | None = Field(None, description="true: the latest in output_dir.")
    freeze_vision: bool = Field(True, description="Keep the vision tower's weights fixed.")
    data: Data
    lora: Lora = Lora()
    train: Train = Train()


class SftJob(Job):
    pass


class GrpoJob(Job):
    lora: Lora = Lora(r=64, alpha=128)
    train: Train = Train(learning_rate=1e-5, epochs=1.0, grad_accum=1, batch_size=8)
    grpo: Grpo = Grpo()
