"""An offline Qwen-style tokenizer: byte-level BPE trained with `tokenizers`, Qwen's special tokens, a chat template.

Real Qwen tokenizers cannot be downloaded at test time; this one has the same special tokens, the same chat
format and the same processor-facing attributes, so every code path that handles a real Qwen tokenizer runs
on it. Training is deterministic for a fixed corpus and vocabulary size.
"""
from __future__ import annotations

from pathlib import Path

# Qwen2/2.5/3-VL special tokens, in Qwen's order (ids follow the trained vocabulary).
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
VISION_TOKENS: tuple[str, ...] = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

# A Qwen-format chat template (ChatML with vision placeholders), written for this project.
CHAT_TEMPLATE = (
    "{%- if messages and messages[0]['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'video' -%}{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

_WORDS = """
grasper hook clipper scissors irrigator bipolar specimen bag forceps knife needle driver suture trocar
gallbladder cystic duct artery liver plate hepatocystic triangle mucosa flap tissue vessel skin nurse patient
preparation calot triangle dissection clipping cutting packaging cleaning coagulation extraction tying suturing
incision closure hemostasis irrigation dressing design adjust camera position lift retract stabilize dissect
novice intermediate expert respect handling time motion flow operation overall performance quality final product
two structures cystic plate seconds second segment segments frame frames video bounding box boxes object action
next step procedure summary caption region describe activity find where happens what comes after current
the a an of in on at to from over interval and with while is are was sampled every left right upper lower
instrument instruments anatomy clinical surgical laparoscopic robotic open nursing injection sampling blood
disinfect insert withdraw press cotton swab tourniquet syringe catheter gloves wash hands check order sheet
""".split()


def _corpus() -> list[str]:
    lines = [" ".join(_WORDS[i : i + 12]) for i in range(0, len(_WORDS), 12)]
    lines += [f"{a}.{b}-{a + 3}.{b} seconds." for a in range(0, 60, 3) for b in (0, 5)]
    lines += [f"{t}.0 seconds: [{t * 7}, {t * 5}, {t * 7 + 40}, {t * 5 + 30}]" for t in range(0, 40)]
    lines += [f"Respect for tissue: {s}/5, Suture/needle handling: {s}/5, Time and motion: {s}/5" for s in range(1, 6)]
    lines += [f"Two structures: {a}, Cystic plate: {b}, Hepatocystic triangle: {a}" for a in range(3) for b in range(3)]
    lines += ["You are a helpful assistant.", "system user assistant", "0123456789 ,.:;[]()-/%?!'\"\n"]
    return lines


def build_tokenizer(vocab_size: int = 1024):
    """Train the byte-level BPE tokenizer and wrap it as a transformers fast tokenizer with Qwen's tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def save_tokenizer(tokenizer, out_dir: Path) -> None:
    tokenizer.save_pretrained(out_dir)
