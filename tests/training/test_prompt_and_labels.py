"""Training sees the engine's prompt, byte for byte, and learns only the answer."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from skinspector.core.engine import qwen_vl_handler_class
from skinspector.core.imaging import prepare_image
from skinspector.core.prompt import (
    FINDINGS_SYSTEM_PROMPT,
    PROMPTS,
    SYSTEM_PROMPT,
    prompt_messages,
    render_user_text,
)
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import ImageSettings
from training.vlm import (
    CAPTION_PROMPT,
    END_OF_TURN,
    IGNORE_INDEX,
    collate,
    encode_example,
    hf_messages,
    load_processor,
    render_prompt,
    training_context,
)

pytestmark = pytest.mark.slow

SMALL = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}
# llama.cpp's mtmd wraps every Qwen2.5-VL image chunk in these two tokens; the Hugging
# Face template writes them around the image-pad placeholder.
VISION = "<|vision_start|><|image_pad|><|vision_end|>"


def _engine_prompt_text(name: str) -> str:
    """What the engine's llama.cpp chat handler renders for the registered prompt ``name``
    (the messages the server's pass sends), the way llama-cpp-python renders it (sandboxed
    Jinja, trim_blocks, lstrip_blocks)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    image = prepare_image(lesion_photo(320, 240), ImageSettings(**SMALL))
    messages = prompt_messages(name, [image.data_uri()], training_context())
    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        qwen_vl_handler_class().CHAT_FORMAT
    )
    text = template.render(messages=messages, add_generation_prompt=True)
    url = image.data_uri()
    assert text.count(url) == 1
    return text.replace(url, VISION)


@pytest.fixture(scope="module")
def processor(tiny_model):  # type: ignore[no-untyped-def]
    return load_processor(tiny_model.hf_dir, **SMALL)


@pytest.mark.parametrize("name", sorted(PROMPTS))
def test_every_registered_prompt_renders_byte_identically_in_training_and_the_engine(
    processor, name: str
) -> None:  # type: ignore[no-untyped-def]
    training = render_prompt(processor.tokenizer, prompt=name)
    assert training == _engine_prompt_text(name)
    assert training.endswith("<|im_start|>assistant\n")  # the generation prompt is there


def test_captions_train_the_prompt_the_servers_first_pass_sends(processor) -> None:  # type: ignore[no-untyped-def]
    from edge_server import analysis

    # The server's pass 1 asks by name for the prompt SkinCAP captions are trained on...
    assert analysis.FINDINGS_PROMPT == CAPTION_PROMPT
    # ...which is the findings prompt, not the five-section assessment.
    rendered = render_prompt(processor.tokenizer)
    assert FINDINGS_SYSTEM_PROMPT in rendered
    assert SYSTEM_PROMPT not in rendered
    assert rendered == _engine_prompt_text(analysis.FINDINGS_PROMPT)


def test_training_messages_come_from_the_shared_prompt_module() -> None:
    messages = hf_messages()
    assert messages[0] == {"role": "system", "content": FINDINGS_SYSTEM_PROMPT}
    assert messages[1]["content"] == [
        {"type": "image"},
        {"type": "text", "text": "Describe the visible findings."},
    ]
    assessment = hf_messages(prompt="assessment")
    assert assessment[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert assessment[1]["content"][1] == {
        "type": "text",
        "text": render_user_text(training_context()),
    }


def _image() -> Image.Image:
    return Image.open(io.BytesIO(lesion_photo(320, 240, seed=3))).convert("RGB")


def test_only_the_answer_and_its_end_token_count_in_the_loss(processor) -> None:  # type: ignore[no-untyped-def]
    answer = "A dark brown plaque with an irregular border on the forearm."
    prompt = render_prompt(processor.tokenizer)
    encoded = encode_example(processor, prompt, _image(), answer)
    labels = encoded.labels
    learned = encoded.input_ids[labels != IGNORE_INDEX]
    assert processor.tokenizer.decode(learned) == answer + END_OF_TURN
    # Everything before the answer is the prompt (image tokens included) and is masked.
    first = int((labels != IGNORE_INDEX).nonzero()[0])
    prefix = processor.tokenizer.decode(encoded.input_ids[:first])
    assert prefix.replace("<|image_pad|>", "") == prompt.replace("<|image_pad|>", "")
    image_pad = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert int((encoded.input_ids == image_pad).sum()) > 1
    assert bool((labels[encoded.input_ids == image_pad] == IGNORE_INDEX).all())
    # The newline after <|im_end|> closes the turn but is not learned.
    assert processor.tokenizer.decode(encoded.input_ids[-1:]) == "\n"
    assert int(labels[-1]) == IGNORE_INDEX


def test_padding_is_masked_in_a_batch(processor) -> None:  # type: ignore[no-untyped-def]
    prompt = render_prompt(processor.tokenizer)
    short = encode_example(processor, prompt, _image(), "Pink papule.")
    long = encode_example(processor, prompt, _image(), "A long answer " * 10)
    batch = collate([short, long], pad_id=processor.tokenizer.pad_token_id)
    size = int(short.input_ids.shape[0])
    assert batch["input_ids"].shape[0] == 2
    assert bool((batch["labels"][0, size:] == IGNORE_INDEX).all())
    assert bool((batch["attention_mask"][0, size:] == 0).all())
    assert int(batch["attention_mask"][1].sum()) == int(long.input_ids.shape[0])
