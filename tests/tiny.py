"""Tiny tokenizers and models built locally for unit tests (no hub access).

``make_tokenizer(family, path)`` trains a small byte-level BPE tokenizer on a fixed corpus
and attaches the chat template of one family; ``make_model(tokenizer, path)`` saves a
randomly initialised two-layer Llama sized to it. Both are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "Hello, how are you doing today? I am fine, thank you very much.",
    "What is the capital of France? The capital of France is Paris.",
    "Tell me a story about a dragon who learned to cook pasta at night.",
    "Write a poem about the sea, the wind, the moon and the stars above.",
    "Can you help me with my homework? Sure, what subject is it about?",
    "I like to play football and basketball with my friends on weekends.",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
    "Sorry, I cannot help with that request. Please ask something else.",
    "system user assistant model You are a helpful assistant.",
] * 20

FAMILIES: dict[str, dict] = {
    # ChatML, as SmolLM2-Instruct (including its default system prompt).
    "chatml": {
        "special": ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        "eos": "<|im_end|>",
        "bos": None,
        "template": (
            "{% for message in messages %}"
            "{% if loop.first and messages[0]['role'] != 'system' %}"
            "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
            "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
            "{% endfor %}"
            "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        ),
    },
    # Llama-3 headers with <|eot_id|> closing every message.
    "llama3": {
        "special": [
            "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
        ],
        "eos": "<|eot_id|>",
        "bos": "<|begin_of_text|>",
        "template": (
            "{{ bos_token }}{% for message in messages %}"
            "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
            " + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
            "{% if add_generation_prompt %}"
            "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
        ),
    },
    # Gemma: the assistant role is called "model"; no system role (merged into user).
    "gemma": {
        "special": ["<bos>", "<eos>", "<start_of_turn>", "<end_of_turn>"],
        "eos": "<end_of_turn>",
        "bos": "<bos>",
        "template": (
            "{{ bos_token }}{% for message in messages %}"
            "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
            "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
            "{% endfor %}"
            "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
        ),
    },
}


def make_tokenizer(family: str, path: str | Path) -> PreTrainedTokenizerFast:
    """Train a ~400-token byte-level BPE with ``family``'s chat template; save to ``path``."""
    spec = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=spec["special"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=spec["eos"],
        bos_token=spec["bos"],
        pad_token=spec["eos"],
    )
    fast.chat_template = spec["template"]
    fast.save_pretrained(str(path))
    return fast


def make_model(tokenizer, path: str | Path, seed: int = 0) -> LlamaForCausalLM:
    """Save a randomly initialised 2-layer Llama sized to ``tokenizer`` at ``path``."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.save_pretrained(str(path))
    tokenizer.save_pretrained(str(path))
    return model
