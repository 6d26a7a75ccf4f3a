"""The tiny random VLMs of ``groundcot.trainer.tiny`` (what ``groundcot tiny-model`` writes), for tests."""
from groundcot.trainer.tiny import BUILDERS, build_tiny_qwen25vl, build_tiny_vlm

__all__ = ["BUILDERS", "build_tiny_qwen25vl", "build_tiny_vlm"]
