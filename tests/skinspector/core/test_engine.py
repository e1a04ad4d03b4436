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
    assert gen_large.prompt_positions - gen_small.prompt_positions == max(26, 19) - max(16, 16)
    # Token counts (what usage reports) take every image embedding: grid_w * grid_h.
    assert gen_large.prompt_tokens - gen_small.prompt_tokens == 26 * 19 - 16 * 16


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
    assert stream.result.completion_tokens == blocking.completion_tokens
    assert stream.result.finish_reason == blocking.finish_reason


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


# ---------------------------------------------------------------- token-level generation


def test_same_tokens_as_llama_cpp_python(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    """The token-by-token loop samples exactly what llama-cpp-python's own chat completion
    samples for the same prompt, seed and settings (min_p 0, as the engine passes it)."""
    messages = vlm.messages(photo_a)
    for seed in (3, 11):
        ours = vlm.complete(messages, SamplingSettings(seed=seed, max_tokens=20))
        theirs = vlm._executor.submit(
            lambda seed=seed: vlm._llm.create_chat_completion(
                messages=messages,
                temperature=0.7,
                top_p=0.95,
                top_k=25,
                min_p=0.0,
                repeat_penalty=1.0,
                max_tokens=20,
                seed=seed,
            )
        ).result()
        assert ours.text == theirs["choices"][0]["message"]["content"]
        assert ours.finish_reason == theirs["choices"][0]["finish_reason"]
        assert ours.completion_tokens == theirs["usage"]["completion_tokens"]


def test_image_cache_encodes_each_photo_once(vlm, photo_a, photo_b) -> None:  # type: ignore[no-untyped-def]
    """Two different prompts (the two passes) over the same photos: one encoder run per
    photo, and the same output as without the cache."""
    from skinspector.core.engine import ImageCache
    from skinspector.core.prompt import Reference, build_findings_messages, build_messages

    uris = [photo_a.data_uri(), photo_b.data_uri()]
    first = build_findings_messages(uris)
    second = build_messages(uris, references=[Reference(title="Tinea", text="Ring-shaped.")])
    cache = ImageCache()
    before = vlm.encoder_runs
    pass1 = vlm.complete(first, SEEDED, image_cache=cache)
    assert (vlm.encoder_runs - before, pass1.images_encoded) == (2, 2)
    pass2 = vlm.complete(second, SEEDED, image_cache=cache)
    assert (vlm.encoder_runs - before, pass2.images_encoded) == (2, 0)
    assert (cache.encoded, cache.reused) == (2, 2)
    uncached = vlm.complete(second, SEEDED)
    assert vlm.encoder_runs - before == 4  # without a cache every call encodes
    assert uncached.text == pass2.text
    assert uncached.prompt_tokens == pass2.prompt_tokens


def test_stop_strings(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    from skinspector.core.engine import GenerationOptions

    messages = vlm.messages(photo_a)
    sampling = SamplingSettings(seed=21, max_tokens=24)
    full = vlm.complete(messages, sampling).text
    assert len(full) > 8
    stop = full[4:7]
    cut = full[: full.index(stop)]
    stopped = vlm.complete(messages, sampling, options=GenerationOptions(stop=(stop, "\x00")))
    assert stopped.text == cut
    assert stopped.finish_reason == "stop"

    async def streamed() -> str:
        pieces = [
            piece
            async for piece in vlm.astream(
                messages, sampling, options=GenerationOptions(stop=(stop,))
            )
        ]
        return "".join(pieces)

    assert asyncio.run(streamed()) == cut
    # A stop string that never appears changes nothing.
    unseen = vlm.complete(messages, sampling, options=GenerationOptions(stop=("\x00\x01",)))
    assert (unseen.text, unseen.finish_reason) == (full, "length")


def test_prompt_over_the_context_is_refused(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    from skinspector.core.engine import ContextLengthError
    from skinspector.core.errors import InputError

    long_notes = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "scaly patch " * 1500},
    ]
    with pytest.raises(ContextLengthError) as caught:
        vlm.complete(long_notes, SEEDED)
    assert isinstance(caught.value, InputError)
    assert caught.value.prompt_tokens > caught.value.n_ctx == 2048
    assert vlm.generate(photo_a, sampling=SEEDED).completion_tokens > 0  # still usable


def test_logprobs_come_from_the_model(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    from skinspector.core.engine import GenerationOptions

    greedy = SamplingSettings(seed=1, temperature=0.0, max_tokens=6)
    result = vlm.complete(vlm.messages(photo_a), greedy, options=GenerationOptions(logprobs=3))
    assert result.logprobs is not None
    assert len(result.logprobs) == result.completion_tokens == 6
    assert (
        b"".join(entry.token_bytes for entry in result.logprobs).decode("utf-8", "ignore")
        == result.text
    )
    for entry in result.logprobs:
        assert entry.logprob <= 0.0
        assert len(entry.top) == 3
        values = [value for _, _, value in entry.top]
        assert values == sorted(values, reverse=True)
        # Greedy decoding picks the likeliest token.
        assert entry.top[0][1] == entry.token_bytes
        assert entry.top[0][2] == pytest.approx(entry.logprob)


def test_json_schema_grammar(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    import json

    from skinspector.core.engine import GenerationOptions, json_grammar

    schema = {
        "type": "object",
        "properties": {"urgent": {"type": "boolean"}},
        "required": ["urgent"],
        "additionalProperties": False,
    }
    options = GenerationOptions(grammar=json_grammar(schema))
    for seed in (1, 2):
        result = vlm.complete(
            vlm.messages(photo_a), SamplingSettings(seed=seed, max_tokens=64), options=options
        )
        assert result.finish_reason == "stop"
        assert isinstance(json.loads(result.text)["urgent"], bool)


def test_penalties_reach_the_sampler(vlm, photo_a) -> None:  # type: ignore[no-untyped-def]
    from skinspector.core.engine import GenerationOptions

    messages = vlm.messages(photo_a)
    sampling = SamplingSettings(seed=4, temperature=0.0, max_tokens=24)
    plain = vlm.complete(messages, sampling)
    penalised = vlm.complete(messages, sampling, options=GenerationOptions(frequency_penalty=2.0))
    present = vlm.complete(messages, sampling, options=GenerationOptions(presence_penalty=2.0))
    # The random tiny model repeats tokens under greedy decoding; penalties break that.
    assert penalised.text != plain.text
    assert present.text != plain.text


def test_threads_default_to_the_cpus_we_may_use(tiny_model) -> None:  # type: ignore[no-untyped-def]
    import os

    with VisionLanguageModel(
        tiny_model.model, tiny_model.mmproj, EngineSettings(n_ctx=1024)
    ) as engine:
        cpus = len(os.sched_getaffinity(0))
        assert (engine.n_threads, engine.n_threads_batch) == (cpus, cpus)
        params = engine._llm.context_params
        assert (params.n_threads, params.n_threads_batch) == (cpus, cpus)
    with VisionLanguageModel(
        tiny_model.model, tiny_model.mmproj, EngineSettings(n_ctx=1024, n_threads=1)
    ) as engine:
        assert engine._llm.context_params.n_threads == 1
