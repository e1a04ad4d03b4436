"""The official ``openai`` client against the box (real server, tiny demo model)."""

from __future__ import annotations

import base64

import pytest
from openai import OpenAI

from tests.edge_server.conftest import LiveServer, photo

pytestmark = pytest.mark.slow


def _client(server: LiveServer) -> OpenAI:
    return OpenAI(
        base_url=f"{server.url}/v1",
        api_key=server.pair("openai client"),
        max_retries=0,
        timeout=120,
    )


def _image_message(seed: int) -> list[dict[str, object]]:
    uri = "data:image/jpeg;base64," + base64.b64encode(photo(seed)).decode()
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": uri}},
                {"type": "text", "text": "Describe this skin lesion."},
            ],
        }
    ]


def test_models_and_completion_with_image(live_server: LiveServer) -> None:
    client = _client(live_server)
    models = [m.id for m in client.models.list()]
    assert models == ["skinspector-demo-tiny-random"]
    completion = client.chat.completions.create(
        model=models[0],
        messages=_image_message(1),
        max_tokens=8,
        seed=3,  # type: ignore[arg-type]
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 8
    again = client.chat.completions.create(
        model=models[0],
        messages=_image_message(1),
        max_tokens=8,
        seed=3,  # type: ignore[arg-type]
    )
    assert again.choices[0].message.content == completion.choices[0].message.content


def test_streamed_completion_with_image(live_server: LiveServer) -> None:
    client = _client(live_server)
    blocking = client.chat.completions.create(
        model="skinspector-demo-tiny-random",
        messages=_image_message(2),  # type: ignore[arg-type]
        max_tokens=10,
        seed=5,
    )
    stream = client.chat.completions.create(
        model="skinspector-demo-tiny-random",
        messages=_image_message(2),  # type: ignore[arg-type]
        max_tokens=10,
        seed=5,
        stream=True,
    )
    pieces, finish = [], None
    for chunk in stream:
        delta = chunk.choices[0].delta.content
        if delta:
            pieces.append(delta)
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(pieces) == blocking.choices[0].message.content
    assert finish == blocking.choices[0].finish_reason
    assert finish in ("length", "stop")


def test_text_only_completion(live_server: LiveServer) -> None:
    client = _client(live_server)
    completion = client.chat.completions.create(
        model="skinspector-demo-tiny-random",
        max_tokens=4,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is scabies?"},
        ],
    )
    assert completion.object == "chat.completion"


def test_the_bundles_sampling_defaults_apply(live_server_factory, demo_bundle) -> None:  # type: ignore[no-untyped-def]
    from edge_server.bundle import ActiveBundle
    from skinspector.core.settings import SamplingSettings

    tuned = demo_bundle.manifest.model_copy(
        update={"sampling": SamplingSettings(max_tokens=3, temperature=0.5)}
    )
    server = live_server_factory(bundle=ActiveBundle(demo_bundle.root, tuned))
    server.wait_ready()
    client = _client(server)
    by_bundle = client.chat.completions.create(
        model="skinspector-demo-tiny-random",
        messages=_image_message(4),  # type: ignore[arg-type]
    )
    assert by_bundle.usage is not None
    assert by_bundle.usage.completion_tokens == 3
    assert by_bundle.choices[0].finish_reason == "length"
    by_request = client.chat.completions.create(
        model="skinspector-demo-tiny-random",
        messages=_image_message(4),  # type: ignore[arg-type]
        max_tokens=5,
    )
    assert by_request.usage is not None
    assert by_request.usage.completion_tokens == 5
