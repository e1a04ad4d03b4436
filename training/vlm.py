"""Qwen2.5-VL on the transformers side: processor, prompt rendering, example encoding and
generation, shared by training, its periodic evaluation and ``skinspector evaluate``.

Prompts come from the registry in ``skinspector.core.prompt`` (``prompt_messages`` by name),
the functions the clinic server's two passes call: the system turn and the user turn are the
same objects. SkinCAP captions describe what is visible, so captions train the server's
pass-1 ``findings`` prompt (:data:`CAPTION_PROMPT`). Only the image part
is written the way each runtime wants it (``image_url`` for llama.cpp, ``image`` for the
Hugging Face chat template), and both chat templates render it as
``<|vision_start|>`` + image tokens + ``<|vision_end|>``; a test checks that the two rendered
prompts are byte-identical around the image.

The images go through ``skinspector.core.imaging.prepare_image`` with the training pixel
budget, exactly as photos do on the clinic box.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinspector.core.case_schema import ClinicalContext, Language
from skinspector.core.errors import ModelError
from skinspector.core.imaging import prepare_image
from skinspector.core.prompt import prompt_messages
from skinspector.core.settings import ImageSettings, SamplingSettings

__all__ = [
    "ASSESSMENT_PROMPT",
    "CAPTION_PROMPT",
    "END_OF_TURN",
    "IGNORE_INDEX",
    "EncodedExample",
    "PromptMismatchError",
    "collate",
    "encode_example",
    "generate_hf",
    "hf_messages",
    "load_image",
    "load_processor",
    "render_prompt",
    "training_context",
]

IGNORE_INDEX = -100
END_OF_TURN = "<|im_end|>"


class PromptMismatchError(ModelError):
    """Tokenising prompt + answer did not start with the tokenised prompt."""


def training_context() -> ClinicalContext:
    """The clinical context of every training and evaluation example (SkinCAP has none)."""
    return ClinicalContext(language=Language.EN)


#: The prompt SkinCAP captions train and evaluation scores: the server's pass 1.
CAPTION_PROMPT = "findings"
#: The server's pass 2, trained (optionally) on synthesized targets.
ASSESSMENT_PROMPT = "assessment"


def hf_messages(
    context: ClinicalContext | None = None, prompt: str = CAPTION_PROMPT
) -> list[dict[str, Any]]:
    """The registered prompt's messages with the image part in the Hugging Face
    chat-template form."""
    messages = prompt_messages(
        prompt, "image://0", context if context is not None else training_context()
    )
    converted: list[dict[str, Any]] = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [
                {"type": "image"} if part["type"] == "image_url" else dict(part) for part in content
            ]
        converted.append({"role": message["role"], "content": content})
    return converted


def render_prompt(
    tokenizer: Any, context: ClinicalContext | None = None, prompt: str = CAPTION_PROMPT
) -> str:
    """The prompt text (ending with the generation prompt) through the tokenizer's template."""
    text: str = tokenizer.apply_chat_template(
        hf_messages(context, prompt), tokenize=False, add_generation_prompt=True
    )
    return text


def load_processor(model: str | Path, *, min_pixels: int, max_pixels: int) -> Any:
    """A Qwen2.5-VL processor without the video processor (which needs torchvision) and
    with the PIL image processor, for a local folder or a hub id."""
    from transformers import AutoTokenizer, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )
    from transformers.processing_utils import ProcessorMixin

    class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
        def __init__(
            self, image_processor: Any = None, tokenizer: Any = None, chat_template: Any = None
        ) -> None:
            self.image_token = "<|image_pad|>"  # noqa: S105 - a token, not a secret
            self.video_token = "<|video_pad|>"  # noqa: S105
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(  # type: ignore[no-untyped-call]
                self, image_processor, tokenizer, chat_template=chat_template
            )

    source = str(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            source, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer/image processor of {source}: {exc}") from exc
    if not tokenizer.chat_template:
        raise ModelError(f"{source} has no chat template")
    # Older preprocessor configs carry min/max_pixels too; ``size`` is the current form.
    for legacy in ("min_pixels", "max_pixels"):
        if legacy in image_processor.__dict__:
            delattr(image_processor, legacy)
    return ImageOnlyQwenProcessor(image_processor, tokenizer, tokenizer.chat_template)


def load_image(path: Path, *, min_pixels: int, max_pixels: int) -> Any:
    """The image as the engine would see it: prepared (oriented, sRGB, stripped, resized to
    the pixel budget) then decoded."""
    from PIL import Image

    settings = ImageSettings(min_pixels=min_pixels, max_pixels=max_pixels)
    prepared = prepare_image(path.read_bytes(), settings)
    return Image.open(io.BytesIO(prepared.jpeg)).convert("RGB")


@dataclass(slots=True)
class EncodedExample:
    """Model inputs for one example; ``labels`` is ``IGNORE_INDEX`` outside the answer."""

    input_ids: Any  # LongTensor [T]
    labels: Any  # LongTensor [T]
    pixel_values: Any  # FloatTensor [patches, dim]
    image_grid_thw: Any  # LongTensor [1, 3]

    @property
    def answer_tokens(self) -> int:
        return int((self.labels != IGNORE_INDEX).sum())

    @property
    def loss_tokens(self) -> int:
        """Positions the loss averages over: the model shifts labels left by one, so the
        first label never counts."""
        return int((self.labels[1:] != IGNORE_INDEX).sum())


def encode_example(processor: Any, prompt: str, image: Any, answer: str) -> EncodedExample:
    """Tokenise ``prompt + answer + <|im_end|>\\n`` with the image; only the answer and its
    end-of-turn token count in the loss (not the prompt, not the newline after it)."""
    full = processor(
        text=[prompt + answer + END_OF_TURN + "\n"], images=[image], return_tensors="pt"
    )
    # The prompt alone, its image placeholder expanded as the processor did for ``full``
    # (one pad per merged patch): tokenised without processing the image a second time.
    merged = int(full["image_grid_thw"][0].prod()) // processor.image_processor.merge_size**2
    expanded = prompt.replace(processor.image_token, processor.image_token * merged, 1)
    prompt_ids = processor.tokenizer(expanded, return_tensors="pt")["input_ids"][0]
    input_ids = full["input_ids"][0]
    n_prompt = int(prompt_ids.shape[0])
    if input_ids.shape[0] <= n_prompt or not bool((input_ids[:n_prompt] == prompt_ids).all()):
        raise PromptMismatchError("the prompt does not tokenise as a prefix of prompt + answer")
    end_id = processor.tokenizer.convert_tokens_to_ids(END_OF_TURN)
    labels = input_ids.clone()
    labels[:n_prompt] = IGNORE_INDEX
    positions = (input_ids == end_id).nonzero().flatten().tolist()
    last_end = max(p for p in positions if p >= n_prompt)
    labels[last_end + 1 :] = IGNORE_INDEX
    return EncodedExample(
        input_ids=input_ids,
        labels=labels,
        pixel_values=full["pixel_values"],
        image_grid_thw=full["image_grid_thw"],
    )


def collate(examples: Sequence[EncodedExample], pad_id: int) -> dict[str, Any]:
    """Right-padded batch; padded positions are masked out of attention and loss."""
    import torch

    length = max(int(example.input_ids.shape[0]) for example in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    for row, example in enumerate(examples):
        size = int(example.input_ids.shape[0])
        input_ids[row, :size] = example.input_ids
        labels[row, :size] = example.labels
        attention[row, :size] = 1
    return {
        "input_ids": input_ids,
        "attention_mask": attention,
        "labels": labels,
        "pixel_values": torch.cat([example.pixel_values for example in examples]),
        "image_grid_thw": torch.cat([example.image_grid_thw for example in examples]),
    }


def generate_hf(
    model: Any,
    processor: Any,
    prompt: str,
    image: Any,
    *,
    seed: int,
    max_new_tokens: int,
    sampling: SamplingSettings | None = None,
) -> str:
    """One sampled answer with a fixed seed (the engine's sampling defaults)."""
    import torch

    sampling = sampling or SamplingSettings()
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    inputs.pop("mm_token_type_ids", None)
    device = next(model.parameters()).device
    inputs = {key: value.to(device) for key, value in inputs.items()}
    torch.manual_seed(seed)
    do_sample = sampling.temperature > 0
    options: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": do_sample}
    if do_sample:
        options.update(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k or None,
            repetition_penalty=sampling.repeat_penalty,
        )
    pad_id = processor.tokenizer.pad_token_id or processor.tokenizer.eos_token_id
    end_id = processor.tokenizer.convert_tokens_to_ids(END_OF_TURN)
    with torch.no_grad():
        output = model.generate(**inputs, **options, pad_token_id=pad_id, eos_token_id=end_id)
    new_tokens = output[0, inputs["input_ids"].shape[1] :]
    text: str = processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
    return text.strip()
