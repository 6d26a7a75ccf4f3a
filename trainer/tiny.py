"""Tiny random VLMs saved to a folder, for offline smoke tests of the training commands
(``groundcot tiny-model DIR``) and for groundcot's tests: a Qwen2.5-VL (the default) or a LLaVA,
with a tokenizer trained in memory, a chat template and PIL image processors (no torchvision,
no download). Their outputs are random: they check that the commands run, nothing more.
"""
from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] in ['image', 'image_url'] %}<image>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
CORPUS = ['<think><area>[{"bbox_2d": [0.125, 0.25, 0.5, 0.75], "depth": 0.5}]</area>'
          "<text>The whole image shows a red car next to a tree.</text></think><answer>yes no 0123456789</answer>",
          "What colour is the car? How many balls are on the grass? system user assistant"]


def train_tokenizer(special: list[str], chat_template: str):
    """A byte-level BPE tokenizer trained in memory, with ``special`` tokens; (raw, wrapped)."""
    from transformers import PreTrainedTokenizerFast

    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=512, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return raw, PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        chat_template=chat_template)


def build_tiny_vlm(path: str, seed: int = 0) -> str:
    """Save a ~100k-parameter random LLaVA with its processor to ``path``."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    raw, tokenizer = train_tokenizer(SPECIAL, CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    eos, pad, image = (raw.token_to_id(t) for t in ("<|im_end|>", "<|endoftext|>", "<image>"))
    torch.manual_seed(seed)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=28, patch_size=14, projection_dim=32),
        text_config=LlamaConfig(vocab_size=raw.get_vocab_size(), hidden_size=32, intermediate_size=64,
                                num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                                max_position_embeddings=8192, eos_token_id=eos, pad_token_id=pad),
        image_token_index=image, vision_feature_layer=-1, vision_feature_select_strategy="default")
    model = LlavaForConditionalGeneration(config)
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.save_pretrained(path)
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28})
    LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                   vision_feature_select_strategy="default", image_token="<image>", num_additional_image_tokens=1,
                   chat_template=CHAT_TEMPLATE).save_pretrained(path)
    return path


QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
QWEN_TEMPLATE = CHAT_TEMPLATE.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")


def build_tiny_qwen25vl(path: str, seed: int = 0) -> str:
    """Save a tiny random Qwen2.5-VL with an image-only processor (no torchvision) to ``path``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    from groundcot.trainer.models import image_only_processor

    raw, tokenizer = train_tokenizer(QWEN_SPECIAL, QWEN_TEMPLATE)
    ids = {t: raw.token_to_id(t) for t in QWEN_SPECIAL}
    special = dict(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"], bos_token_id=None)
    torch.manual_seed(seed)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=raw.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 2, 4]}, **special),
        vision_config=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
                           patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                           fullatt_block_indexes=[1]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"], **special)
    model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config.eos_token_id = special["eos_token_id"]
    model.generation_config.pad_token_id = special["pad_token_id"]
    model.save_pretrained(path)
    processor = image_only_processor("qwen2_5_vl")(
        image_processor=Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16),
        tokenizer=tokenizer, chat_template=QWEN_TEMPLATE)
    processor.save_pretrained(path)
    return path


BUILDERS = {"qwen25vl": build_tiny_qwen25vl, "llava": build_tiny_vlm}
