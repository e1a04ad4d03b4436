"""Gradient accumulation weights micro-batches by answer tokens: 4 x batch 1 == batch 4."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from skinspector.core.samples import lesion_photo
from training.trainer import accumulate_gradients
from training.vlm import collate, encode_example, load_processor, render_prompt

pytestmark = pytest.mark.slow

SMALL = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}
ANSWERS = (
    "Pink papule.",
    "A " + "long answer " * 12,
    "Scaly plaque on the shin.",
    "A dark brown macule with an irregular border on the left forearm.",
)


def _grads(model) -> dict[str, object]:  # type: ignore[no-untyped-def]
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return grads


def test_accumulating_micro_batches_equals_one_batch(tiny_model) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    processor = load_processor(tiny_model.hf_dir, **SMALL)
    prompt = render_prompt(processor.tokenizer)
    examples = [
        encode_example(
            processor, prompt, Image.open(io.BytesIO(lesion_photo(224, 168, seed=i))), answer
        )
        for i, answer in enumerate(ANSWERS)
    ]
    assert len({e.loss_tokens for e in examples}) == len(examples)  # unequal on purpose
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        tiny_model.hf_dir, dtype=torch.float32
    ).eval()  # no dropout: both ways see the same function
    pad = processor.tokenizer.pad_token_id or 0
    whole_loss = accumulate_gradients(model, [examples], pad, "cpu")
    whole = _grads(model)
    micro_loss = accumulate_gradients(model, [[e] for e in examples], pad, "cpu")
    micro = _grads(model)
    assert micro_loss == pytest.approx(whole_loss, rel=1e-5)
    assert whole.keys() == micro.keys()
    for name in whole:
        torch.testing.assert_close(micro[name], whole[name], rtol=1e-4, atol=1e-6, msg=name)
    # Averaging the micro-batch losses equally (the old way) is a different gradient.
    for example in examples:
        loss = model(**collate([example], pad)).loss
        (loss / len(examples)).backward()
    equal = _grads(model)
    assert any(not torch.allclose(equal[n], whole[n], rtol=1e-3, atol=1e-6) for n in whole)
