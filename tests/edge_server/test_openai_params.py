"""OpenAI-compatible behaviour with the stock ``openai`` client: parameters honoured or
refused, OpenAI-shaped errors, context overflow, usage, disconnects, admission."""

from __future__ import annotations

import asyncio
import base64
import json
import logging

import httpx
import openai
import pytest
from openai import OpenAI

from tests.edge_server.conftest import LiveServer, photo

pytestmark = pytest.mark.slow

MODEL = "skinspector-demo-tiny-random"


def _client(server: LiveServer) -> OpenAI:
    return OpenAI(
        base_url=f"{server.url}/v1",
        api_key=server.pair("openai client"),
        max_retries=0,
        timeout=120,
    )


def _uri(data: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _image_message(seed: int = 1, width: int = 1024, height: int = 768) -> list[dict[str, object]]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": _uri(photo(seed, width, height))}},
                {"type": "text", "text": "Describe this skin lesion."},
            ],
        }
    ]


def _too_long() -> list[dict[str, object]]:
    return [{"role": "user", "content": "itchy scaly patch " * 2000}]  # > 4096 tokens


@pytest.fixture
def client(live_server: LiveServer) -> OpenAI:
    return _client(live_server)


def _assert_openai_error(error: openai.APIStatusError, status: int, code: str) -> dict:  # type: ignore[type-arg]
    assert error.status_code == status
    body = error.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    assert body["code"] == code
    assert body["message"]
    return body  # type: ignore[no-any-return]


def test_context_length_exceeded(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=_too_long(), max_tokens=4)  # type: ignore[arg-type]
    body = _assert_openai_error(caught.value, 400, "context_length_exceeded")
    assert body["type"] == "invalid_request_error"
    assert body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as streamed:  # raised on the 400 response
        client.chat.completions.create(
            model=MODEL,
            messages=_too_long(),  # type: ignore[arg-type]
            max_tokens=4,
            stream=True,
        )
    _assert_openai_error(streamed.value, 400, "context_length_exceeded")


def test_streamed_overflow_is_one_plain_response(live_server: LiveServer) -> None:
    token = live_server.pair("raw")
    with live_server.client(token) as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": _too_long(), "stream": True, "max_tokens": 4},
        )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert b"HTTP/1.1" not in response.content
    assert response.json()["error"]["code"] == "context_length_exceeded"


def test_usage_counts_image_tokens(client: OpenAI) -> None:
    usage = []
    for width, height in ((448, 448), (1024, 768)):  # 16x16 and 26x19 merged patches
        completion = client.chat.completions.create(
            model=MODEL,
            messages=_image_message(1, width, height),  # type: ignore[arg-type]
            max_tokens=1,
        )
        assert completion.usage is not None
        usage.append(completion.usage)
    assert usage[1].prompt_tokens - usage[0].prompt_tokens == 26 * 19 - 16 * 16
    assert usage[0].prompt_tokens > 16 * 16
    assert usage[0].total_tokens == usage[0].prompt_tokens + usage[0].completion_tokens


def test_stop_seed_and_penalties_are_honoured(client: OpenAI) -> None:
    base = {"model": MODEL, "messages": _image_message(2), "max_tokens": 16}
    first = client.chat.completions.create(**base, seed=8)  # type: ignore[call-overload]
    again = client.chat.completions.create(**base, seed=8)  # type: ignore[call-overload]
    other = client.chat.completions.create(**base, seed=9)  # type: ignore[call-overload]
    text = first.choices[0].message.content
    assert text
    assert text == again.choices[0].message.content
    assert other.choices[0].message.content != text
    stop = text[3:6]
    stopped = client.chat.completions.create(**base, seed=8, stop=[stop])  # type: ignore[call-overload]
    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert stopped.choices[0].finish_reason == "stop"
    greedy = {**base, "temperature": 0, "max_tokens": 24}
    plain = client.chat.completions.create(**greedy)  # type: ignore[call-overload]
    penalised = client.chat.completions.create(**greedy, frequency_penalty=2.0)  # type: ignore[call-overload]
    present = client.chat.completions.create(**greedy, presence_penalty=2.0)  # type: ignore[call-overload]
    assert penalised.choices[0].message.content != plain.choices[0].message.content
    assert present.choices[0].message.content != plain.choices[0].message.content


def test_response_formats(client: OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"action": {"type": "string", "enum": ["self-care", "refer"]}},
        "required": ["action"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(3),  # type: ignore[arg-type]
        max_tokens=64,
        seed=1,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "triage", "schema": schema, "strict": True},
        },
    )
    assert completion.choices[0].finish_reason == "stop"
    assert json.loads(completion.choices[0].message.content or "")["action"] in (
        "self-care",
        "refer",
    )
    anything = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Reply in JSON."}],
        max_tokens=200,
        seed=2,
        response_format={"type": "json_object"},
    )
    content = anything.choices[0].message.content or ""
    if anything.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)
    else:  # cut by max_tokens: still a JSON object's beginning
        assert content.lstrip().startswith("{")


def test_logprobs(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(4),  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None
    assert logprobs.content is not None
    assert len(logprobs.content) == 5
    for entry in logprobs.content:
        assert entry.logprob <= 0
        assert len(entry.top_logprobs) == 2
        assert entry.top_logprobs[0].bytes == entry.bytes  # greedy: the likeliest token
    stream = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(4),  # type: ignore[arg-type]
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=2,
        stream=True,
    )
    streamed = [
        entry.logprob
        for chunk in stream
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content
        for entry in chunk.choices[0].logprobs.content
    ]
    assert streamed == pytest.approx([entry.logprob for entry in logprobs.content])


def test_n_choices_and_usage_chunk(client: OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(5),  # type: ignore[arg-type]
        max_tokens=6,
        seed=3,
        n=2,
    )
    assert [c.index for c in completion.choices] == [0, 1]
    texts = [c.message.content for c in completion.choices]
    assert texts[0] != texts[1]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 12
    stream = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(5),  # type: ignore[arg-type]
        max_tokens=6,
        seed=3,
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: dict[int, list[str]] = {0: [], 1: []}
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
            assert chunk.choices == []
        for choice in chunk.choices:
            pieces[choice.index].append(choice.delta.content or "")
    assert ["".join(pieces[0]), "".join(pieces[1])] == texts
    assert usage is not None
    assert usage.prompt_tokens == completion.usage.prompt_tokens
    assert usage.completion_tokens == 12
    plain = client.chat.completions.create(
        model=MODEL,
        messages=_image_message(5),  # type: ignore[arg-type]
        max_tokens=2,
        stream=True,
    )
    assert all(chunk.usage is None for chunk in plain)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools",
            "unsupported_parameter",
        ),
        ({"tool_choice": "auto"}, "tool_choice", "unsupported_parameter"),
        ({"logit_bias": {"1": 5}}, "logit_bias", "unsupported_parameter"),
        ({"top_logprobs": 2}, "top_logprobs", "invalid_value"),
        ({"n": 50}, "n", "invalid_value"),
        ({"temperature": 5}, "temperature", "invalid_value"),
    ],
)
def test_refused_parameters(client: OpenAI, extra: dict, param: str, code: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            max_tokens=2,
            **extra,
        )
    body = _assert_openai_error(caught.value, 400, code)
    assert body["param"] == param
    assert body["type"] == "invalid_request_error"


def test_unknown_parameter_and_model(client: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "hi"}],
            extra_body={"mirostat": 2},
        )
    body = _assert_openai_error(caught.value, 400, "unsupported_parameter")
    assert body["param"] == "mirostat"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert _assert_openai_error(missing.value, 404, "model_not_found")["param"] == "model"


def test_disconnect_mid_stream_leaves_no_traceback(
    live_server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    token = live_server.pair("leaver")
    caplog.set_level(logging.DEBUG)
    body = {"model": MODEL, "messages": _image_message(6), "max_tokens": 400, "stream": True}
    with (
        httpx.Client(base_url=live_server.url, timeout=60) as http,
        http.stream(
            "POST",
            "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status_code == 200
        lines = response.iter_lines()
        seen = [next(lines) for _ in range(6)]
        assert any(line.startswith("data: ") for line in seen)
    # The box is free again (the generation was cancelled) and answers the next request.
    client = _client(live_server)
    after = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        max_tokens=2,  # type: ignore[list-item]
    )
    assert after.choices[0].message.content is not None
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_queue_slot_is_taken_before_images_are_decoded(live_server: LiveServer) -> None:
    """With the queue full, a request with a (bogus) image is refused 503 at once: the
    server did not decode the image before asking for a slot."""
    from edge_server.keys import ADMISSION

    admission = live_server.running.app[ADMISSION]

    async def fill() -> int:
        taken = 0
        while admission.try_acquire():
            taken += 1
        return taken

    async def drain(count: int) -> None:
        for _ in range(count):
            admission.release()

    taken = asyncio.run_coroutine_threadsafe(fill(), live_server.loop).result()
    try:
        client = _client(live_server)
        bogus = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": _uri(b"not an image at all")}}
                ],
            }
        ]
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=bogus, max_tokens=2)  # type: ignore[arg-type]
        body = _assert_openai_error(caught.value, 503, "busy")
        assert body["type"] == "server_error"
        assert caught.value.response.headers["Retry-After"]
    finally:
        asyncio.run_coroutine_threadsafe(drain(taken), live_server.loop).result()
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model=MODEL, messages=bogus, max_tokens=2)  # type: ignore[arg-type]
    _assert_openai_error(bad.value, 400, "invalid_image")


def test_errors_outside_the_chat_route_have_openais_shape(live_server: LiveServer) -> None:
    """401 (no token), 404 (no such route) and 405 from aiohttp are read by the stock
    client as OpenAI errors too."""
    import httpx
    import openai

    with (
        openai.OpenAI(base_url=live_server.url + "/v1", api_key="not-a-paired-token") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.models.list()
    assert caught.value.status_code == 401
    for response in (
        httpx.get(live_server.url + "/v1/chat/completions"),  # 405 (or 401 first)
        httpx.get(live_server.url + "/v1/nowhere"),
    ):
        error = response.json()["error"]
        assert set(error) >= {"message", "type", "param", "code"}, error
        assert error["type"] == "invalid_request_error"
