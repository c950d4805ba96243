"""Tiny random models and a tokenizer built in-process, for tests: no files, no network.

    model, tok = tiny_causal_lm(seed=0)
"""

from __future__ import annotations

import torch

SPECIALS = ["<pad>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a good answer is short, kind and correct. a bad answer is long and rude.",
    "user assistant system hello thanks please what why how 0123456789",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer (a few hundred tokens) with chat special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tk.train_from_iterator(_CORPUS * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="<|im_end|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_config(tok, **overrides):
    from transformers import LlamaConfig

    kw = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id,
              tie_word_embeddings=False, attn_implementation="sdpa")
    kw.update(overrides)
    return LlamaConfig(**kw)


def tiny_causal_lm(seed: int = 0, **overrides):
    from transformers import LlamaForCausalLM

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    return LlamaForCausalLM(tiny_config(tok, **overrides)).float(), tok


def tiny_reward_model(seed: int = 0, **overrides):
    from transformers import LlamaForSequenceClassification

    tok = tiny_tokenizer()
    torch.manual_seed(seed)
    return LlamaForSequenceClassification(tiny_config(tok, num_labels=1, **overrides)).float(), tok


def save_tiny(path, seed: int = 0, reward: bool = False) -> str:
    """Write a tiny model + tokenizer to ``path`` so configs can load it like any HF checkpoint."""
    model, tok = (tiny_reward_model if reward else tiny_causal_lm)(seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def save_tiny_encoder(path, seed: int = 0) -> str:
    """A tiny random BERT encoder + WordPiece tokenizer: a stand-in sentence-embedding model
    (sentence-transformers wraps a plain encoder directory with mean pooling)."""
    from pathlib import Path

    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in _CORPUS for w in line.replace(".", " ").replace(",", " ").split()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz0123456789?!.,") + words
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=256)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
