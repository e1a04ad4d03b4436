"""The real tiny Q4_K_M GGUF + F16 mmproj, run by llama.cpp through the engine."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from skinspector.core.engine import VisionLanguageModel
from skinspector.core.errors import ModelError, ModelFileError, ModelMismatchError
from skinspector.core.imaging import prepare_image
from skinspector.core.samples import lesion_photo
from skinspector.core.settings import EngineSettings, SamplingSettings

pytestmark = pytest.mark.slow

SEEDED = SamplingSettings(seed=1234, max_tokens=24)


@pytest.fixture(scope="module")
def vlm(tiny_model):  # type: ignore[no-untyped-def]
    engine = VisionLanguageModel(
        tiny_model.model, tiny_model.mmproj, EngineSettings(n_ctx=2048, n_threads=2)
    )
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def photo_a():  # type: ignore[no-untyped-def]
    return prepare_image(lesion_photo(1024, 768, seed=1))


@pytest.fixture(scope="module")
def photo_b():  # type: ignore[no-untyped-def]
    return prepare_image(lesion_photo(1024, 768, seed=2))


def test_image_positions_reach_the_model(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    """The evaluated prompt grows exactly as the image grid the pixel budget implies.

    Qwen2.5-VL uses M-RoPE: an image of gw x gh merged patches feeds gw*gh embeddings but
    advances the position counter by max(gw, gh). Same text, two image sizes: the prompt
    length llama.cpp evaluated differs by exactly the difference of those maxima.
    """
    small = prepare_image(lesion_photo(448, 448, seed=1))  # 16 x 16 grid
    large = photo_a  # 1024x768 -> 728x532 -> 26 x 19 grid
    assert (small.width, small.height) == (448, 448)
    assert (large.width, large.height) == (728, 532)
    gen_small = vlm.generate(small, sampling=SEEDED)
    gen_large = vlm.generate(large, sampling=SEEDED)
    assert gen_large.prompt_tokens - gen_small.prompt_tokens == max(26, 19) - max(16, 16)


def test_image_token_count_matches_the_pixel_budget(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    """llama.cpp's own tokenizer gives the image chunk (W/28)*(H/28) tokens."""
    assert vlm.count_image_tokens(photo_a) == photo_a.merged_patches


def test_fixed_seed_is_reproducible(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    first = vlm.generate(photo_a, sampling=SEEDED)
    second = vlm.generate(photo_a, sampling=SEEDED)
    assert first.text == second.text
    assert first.completion_tokens > 0


def test_different_images_give_different_outputs(vlm, photo_a, photo_b) -> None:  # type: ignore[no-untyped-def]
    # Same seed and sampling: the same image gives the same text, another image another
    # text, so the difference comes from the image. (Greedy decoding is no use here: the
    # random tiny model falls into repeating one token whatever it sees.)
    for seed in (1, 7):
        sampling = SamplingSettings(max_tokens=24, seed=seed)
        first = vlm.generate(photo_a, sampling=sampling).text
        assert vlm.generate(photo_a, sampling=sampling).text == first
        assert vlm.generate(photo_b, sampling=sampling).text != first


def test_sampling_parameters_reach_llama_cpp(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    # max_tokens is honoured exactly by a random model (it never emits EOS this early).
    short = vlm.generate(photo_a, sampling=SamplingSettings(seed=5, max_tokens=5))
    assert short.completion_tokens == 5
    assert short.finish_reason == "length"
    # Seeds matter at temperature 0.7 with top_k 25 ...
    texts = {
        vlm.generate(photo_a, sampling=SamplingSettings(seed=s, max_tokens=16)).text
        for s in (1, 2, 3)
    }
    assert len(texts) > 1
    # ... and stop mattering when top_k=1 makes sampling greedy.
    greedy = {
        vlm.generate(photo_a, sampling=SamplingSettings(seed=s, top_k=1, max_tokens=16)).text
        for s in (1, 2, 3)
    }
    assert len(greedy) == 1


def test_streaming_equals_blocking(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    stream = vlm.stream(photo_a, sampling=SEEDED)
    pieces = list(stream)
    assert stream.result is not None
    blocking = vlm.generate(photo_a, sampling=SEEDED)
    assert "".join(pieces) == stream.result.text == blocking.text
    assert stream.result.prompt_tokens == blocking.prompt_tokens


def test_async_stream_cancel_then_reuse(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    messages = vlm.messages(photo_a)

    async def scenario() -> tuple[list[str], str]:
        pieces: list[str] = []
        stream = vlm.astream(messages, SamplingSettings(seed=9, max_tokens=200))
        async for piece in stream:
            pieces.append(piece)
            if len(pieces) == 3:
                break
        await stream.aclose()
        after = await vlm.agenerate(messages, SamplingSettings(seed=9, max_tokens=8))
        return pieces, after.text

    pieces, after = asyncio.run(scenario())
    assert len(pieces) == 3
    assert after  # the worker is free again after a cancelled stream


def test_missing_gguf(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelFileError, match="not found"):
        VisionLanguageModel(tmp_path / "nope.gguf", tiny_model.mmproj)


def test_not_a_gguf(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 definitely a zip file")
    with pytest.raises(ModelFileError, match="not a GGUF"):
        VisionLanguageModel(bogus, tiny_model.mmproj)


def test_corrupt_gguf(tiny_model, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    corrupt = tmp_path / "model.gguf"
    data = tiny_model.model.read_bytes()
    corrupt.write_bytes(data[: len(data) // 3])  # valid header, truncated tensor data
    with pytest.raises(ModelFileError):
        VisionLanguageModel(corrupt, tiny_model.mmproj)


def test_mmproj_passed_as_model(tiny_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError):
        VisionLanguageModel(tiny_model.mmproj, tiny_model.mmproj)


def test_mismatched_mmproj(tiny_model, wide_tiny_model) -> None:  # type: ignore[no-untyped-def]
    """A projector whose output width differs from the model's embedding width."""
    with pytest.raises(ModelMismatchError, match="does not fit"):
        VisionLanguageModel(tiny_model.model, wide_tiny_model.mmproj)


def test_closed_model_refuses_work(tiny_model, photo_a, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "m.gguf"
    shutil.copyfile(tiny_model.model, model)
    engine = VisionLanguageModel(model, tiny_model.mmproj, EngineSettings(n_ctx=1024))
    engine.close()
    with pytest.raises(ModelError, match="closed"):
        engine.generate(photo_a)
