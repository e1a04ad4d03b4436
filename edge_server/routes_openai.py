"""An OpenAI-compatible surface: ``GET /v1/models`` and ``POST /v1/chat/completions``
(text and ``image_url`` parts, streamed or not), so the ``openai`` client works.

Images must be ``data:`` URIs: the box is offline, and fetching URLs or local files on a
client's behalf would be a hole. Every image goes through the same preparation as uploads
(orientation, metadata stripped, pixel budget).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from edge_server.bundle import effective_sampling
from edge_server.http_errors import ApiError, json_body
from edge_server.keys import ADMISSION, BUNDLE, METRICS, RUNTIME, SETTINGS
from skinspector.core.engine import Generation
from skinspector.core.imaging import prepare_image
from skinspector.core.settings import ImageSettings

__all__ = ["routes"]

routes = web.RouteTableDef()


class ImageUrl(BaseModel):
    url: str
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1000)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    seed: int | None = Field(None, ge=0)
    frequency_penalty: float | None = None
    presence_penalty: float | None = None


def _image_bytes(url: str) -> bytes:
    if not url.startswith("data:"):
        raise ApiError(
            400, "unsupported_image_url", "only data: URIs are accepted (the box is offline)"
        )
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise ApiError(400, "unsupported_image_url", "data: URIs must be base64-encoded")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "invalid_image", "the image data is not valid base64") from exc


def _prepare_messages(
    request: ChatRequest, image: ImageSettings, max_images: int
) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    images = 0
    for message in request.messages:
        if message.content is None or isinstance(message.content, str):
            messages.append({"role": message.role, "content": message.content or ""})
            continue
        parts: list[dict[str, Any]] = []
        for part in message.content:
            if part.type == "text":
                parts.append({"type": "text", "text": part.text or ""})
            else:
                if part.image_url is None:
                    raise ApiError(400, "invalid_request", "image_url part without image_url")
                images += 1
                if images > max_images:
                    raise ApiError(400, "too_many_images", f"send at most {max_images} images")
                prepared = prepare_image(_image_bytes(part.image_url.url), image)
                parts.append({"type": "image_url", "image_url": {"url": prepared.data_uri()}})
        messages.append({"role": message.role, "content": parts})
    return messages


@routes.get("/v1/models")
async def list_models(request: web.Request) -> web.Response:
    bundle = request.app[BUNDLE]
    return web.json_response(
        {
            "object": "list",
            "data": [
                {
                    "id": bundle.manifest.model_id,
                    "object": "model",
                    "created": int(time.time()),
                    "owned_by": "skinspector",
                }
            ],
        }
    )


@routes.post("/v1/chat/completions")
async def chat_completions(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    chat = await json_body(request, ChatRequest)
    bundle = app[BUNDLE]
    if chat.model not in (None, bundle.manifest.model_id):
        raise ApiError(404, "model_not_found", f"this box serves {bundle.manifest.model_id!r}")
    messages = await asyncio.to_thread(
        _prepare_messages, chat, settings.image, settings.server.max_photos
    )
    updates: dict[str, Any] = {}
    for key in ("temperature", "top_p", "top_k", "seed"):
        if getattr(chat, key) is not None:
            updates[key] = getattr(chat, key)
    max_tokens = chat.max_completion_tokens or chat.max_tokens
    if max_tokens is not None:
        updates["max_tokens"] = max_tokens
    # The request's values, then those set in the settings, then the bundle's defaults.
    defaults = effective_sampling(bundle.current, settings.engine.sampling)
    sampling = defaults.model_copy(update=updates)
    admission = app[ADMISSION]
    if not admission.try_acquire():
        app[METRICS].rejected.inc()
        raise ApiError(
            503,
            "busy",
            "the model queue is full; try again shortly",
            headers={"Retry-After": str(settings.server.retry_after_seconds)},
        )
    model = app[RUNTIME].model
    if model is None:
        admission.release()
        raise ApiError(
            503,
            "loading",
            "the model is still loading; try again shortly",
            headers={"Retry-After": "5"},
        )
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    model_id = bundle.manifest.model_id
    started = time.perf_counter()
    try:
        if not chat.stream:
            generation = await model.agenerate(messages, sampling)
            app[METRICS].observe_generation(
                "chat", generation.seconds, generation.completion_tokens
            )
            return web.json_response(
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": model_id,
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": generation.finish_reason,
                            "message": {"role": "assistant", "content": generation.text},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": generation.prompt_tokens,
                        "completion_tokens": generation.completion_tokens,
                        "total_tokens": generation.prompt_tokens + generation.completion_tokens,
                    },
                }
            )
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)

        def chunk(delta: dict[str, Any], finish: str | None) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

        await response.write(chunk({"role": "assistant", "content": ""}, None))
        results: list[Generation] = []
        async for piece in model.astream(messages, sampling, results.append):
            await response.write(chunk({"content": piece}, None))
        # The finish reason and token count come from llama.cpp, as in the blocking answer
        # (counting streamed pieces undercounts: one piece can hold several tokens).
        await response.write(chunk({}, results[0].finish_reason))
        await response.write(b"data: [DONE]\n\n")
        app[METRICS].observe_generation(
            "chat", time.perf_counter() - started, results[0].completion_tokens
        )
        return response
    finally:
        admission.release()
