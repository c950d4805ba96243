"""Text helpers shared by every package: a prompt rendered for the model (chat template or plain
text), its token ids, and the plain text of a prompt or a response (:func:`text_of`).

Conversational prompts go through the tokenizer's own chat template with the generation prompt; a
tokenizer without one uses :data:`FALLBACK_TEMPLATE`. Plain-text prompts are used as they are (TRL's
convention) unless ``wrap_text_as_chat`` is set, which makes them a single user turn.
"""

from __future__ import annotations

FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def render_prompt(tokenizer, prompt, wrap_text_as_chat: bool) -> str:
    """The prompt as the text the model reads before its response."""
    if isinstance(prompt, str) and not wrap_text_as_chat:
        return prompt
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": prompt}]
    template = None if getattr(tokenizer, "chat_template", None) else FALLBACK_TEMPLATE
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, chat_template=template)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` with no special tokens added."""
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prompt_ids(tokenizer, prompt, wrap_text_as_chat: bool) -> list[int]:
    return encode(tokenizer, render_prompt(tokenizer, prompt, wrap_text_as_chat))


def text_of(value) -> str:
    """A prompt or a response as plain text: what scorers, judges, feature extractors and the tokeniser
    of responses read. A string is itself. A response in conversational form (assistant messages only)
    is what the assistant wrote, the contents joined: the same text as a sampled completion, and the
    text that is tokenised for training. Any other list of messages (a prompt, a conversation) is one
    line per message, ``role: content``, so that who said what is kept."""
    if isinstance(value, str):
        return value
    if all(m["role"] == "assistant" for m in value):
        return "".join(m["content"] for m in value)
    return "\n".join(f"{m['role']}: {m['content']}" for m in value)


