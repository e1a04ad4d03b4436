"""An OpenAI-compatible surface: ``GET /v1/models`` and ``POST /v1/chat/completions``
(text and ``image_url`` parts, streamed or not), so the ``openai`` client works.

Parameters are honoured or refused (400 ``unsupported_parameter``), never silently
ignored: ``stop``, ``seed``, ``frequency_penalty``/``presence_penalty``, ``n``,
``response_format`` (``json_object``, ``json_schema``: a llama.cpp grammar constrains the
output), ``logprobs``/``top_logprobs`` and ``stream_options.include_usage`` work; tools and
function calling are refused. Errors have OpenAI's shape (``message``, ``type``, ``param``,
``code``); a prompt over the context window is a 400 ``context_length_exceeded``, streamed
or not; an error after a stream has started ends it with an SSE error event.

Images must be ``data:`` URIs: the box is offline, and fetching URLs or local files on a
client's behalf would be a hole. Every image goes through the same preparation as uploads
(orientation, metadata stripped, pixel budget), after the request has its place in the
model queue.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_server.bundle import effective_sampling
from edge_server.http_errors import ApiError, json_body
from edge_server.keys import ADMISSION, BUNDLE, METRICS, RUNTIME, SETTINGS, STORE
from skinspector.core.engine import (
    Chunk,
    ContextLengthError,
    Generation,
    GenerationOptions,
    ImageCache,
    InvalidGrammarError,
    TokenLogprob,
    json_grammar,
)
from skinspector.core.errors import InputError
from skinspector.core.imaging import DecodePool
from skinspector.core.prompt import neutralise_special_tokens
from skinspector.core.settings import ImageSettings, SamplingSettings

__all__ = ["OpenAIError", "routes"]

routes = web.RouteTableDef()
log = logging.getLogger("skinspector.openai")

#: Choices one request may ask for (each is a full generation on the shared model).
MAX_CHOICES = 4
#: Parameters a client may send that change nothing here (no effect to honour).
_NO_EFFECT = ("user", "metadata", "service_tier", "parallel_tool_calls")
#: Parameters that would need features this box does not have.
_REFUSED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logit_bias",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
    "reasoning_effort",
)


def _error_type(status: int) -> str:
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 429:
        return "rate_limit_error"
    if status >= 500:
        return "server_error"
    return "invalid_request_error"


class OpenAIError(ApiError):
    """An error answered in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(
        self,
        status: int,
        code: str | None,
        message: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(status, code or "", message, headers=headers)
        self.param = param
        self.openai_code = code

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": _error_type(self.status),
                "param": self.param,
                "code": self.openai_code,
            }
        }

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, headers=self.headers)


# ---------------------------------------------------------------- request schema


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "image_url"]
    text: str | None = None
    image_url: ImageUrl | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = Field(None, max_length=64)  # accepted; the template has no names
    refusal: str | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class JsonSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(max_length=64)
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, le=1000)
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    seed: int | None = Field(None, ge=0, lt=2**32)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    stop: str | list[str] | None = None
    n: int | None = Field(None, ge=1, le=MAX_CHOICES)
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    store: bool | None = None
    # Accepted, no effect here (see _NO_EFFECT) ...
    user: str | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    parallel_tool_calls: bool | None = None
    # ... and refused when set (see _REFUSED).
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    logit_bias: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None


def _validation_error(exc: ValidationError) -> OpenAIError:
    first = exc.errors(include_url=False, include_input=False)[0]
    param = ".".join(str(p) for p in first["loc"]) or None
    kind = first["type"]
    if kind == "extra_forbidden":
        return OpenAIError(
            400, "unsupported_parameter", f"unsupported parameter: {param!r}", param=param
        )
    code = "missing_required_parameter" if kind == "missing" else "invalid_value"
    return OpenAIError(400, code, f"invalid {param!r}: {first['msg']}", param=param)


def _checked(chat: ChatRequest) -> None:
    """Refusals a schema cannot express."""
    for name in _REFUSED:
        if getattr(chat, name) not in (None, [], {}):
            raise OpenAIError(
                400,
                "unsupported_parameter",
                f"{name!r} is not supported by this server (no tool or function calling)",
                param=name,
            )
    if chat.store:
        raise OpenAIError(
            400, "unsupported_parameter", "this box does not store completions", param="store"
        )
    if chat.top_logprobs is not None and not chat.logprobs:
        raise OpenAIError(
            400, "invalid_value", "'top_logprobs' needs 'logprobs': true", param="top_logprobs"
        )
    if chat.stream_options is not None and not chat.stream:
        raise OpenAIError(
            400, "invalid_value", "'stream_options' needs 'stream': true", param="stream_options"
        )
    stops = [chat.stop] if isinstance(chat.stop, str) else chat.stop or []
    if len(stops) > 4 or any(not s or len(s) > 256 for s in stops):
        raise OpenAIError(
            400, "invalid_value", "'stop' takes up to 4 non-empty strings", param="stop"
        )
    fmt = chat.response_format
    if fmt is not None and fmt.type == "json_schema" and fmt.json_schema is None:
        raise OpenAIError(
            400,
            "missing_required_parameter",
            "'response_format.json_schema' is required for type json_schema",
            param="response_format.json_schema",
        )
    for index, message in enumerate(chat.messages):
        if (
            message.role != "user"
            and isinstance(message.content, list)
            and any(part.type == "image_url" for part in message.content)
        ):
            raise OpenAIError(
                400,
                "invalid_value",
                "images are accepted in user messages only",
                param=f"messages.{index}.content",
            )


def _image_bytes(url: str, param: str) -> bytes:
    if not url.startswith("data:"):
        raise OpenAIError(
            400,
            "unsupported_image_url",
            "only data: URIs are accepted (the box is offline)",
            param=param,
        )
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        raise OpenAIError(
            400, "unsupported_image_url", "data: URIs must be base64-encoded", param=param
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OpenAIError(
            400, "invalid_image", "the image data is not valid base64", param=param
        ) from exc


def _count_images(request: ChatRequest, max_images: int) -> None:
    images = sum(
        1
        for message in request.messages
        if isinstance(message.content, list)
        for part in message.content
        if part.type == "image_url"
    )
    if images > max_images:
        raise OpenAIError(
            400, "too_many_images", f"send at most {max_images} images", param="messages"
        )


async def _prepare_messages(
    request: ChatRequest, image: ImageSettings, decoder: DecodePool
) -> list[dict[str, Any]]:
    """The request's messages for the chat template: text with special tokens neutralised
    (a client's text can never become a control token), images decoded on the bounded
    decode pool the photo intake uses."""
    safe = neutralise_special_tokens
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role
        if message.content is None or isinstance(message.content, str):
            messages.append({"role": role, "content": safe(message.content or "")})
            continue
        if role != "user":  # the template takes plain text for these roles
            text = "".join(part.text or "" for part in message.content)
            messages.append({"role": role, "content": safe(text)})
            continue
        parts: list[dict[str, Any]] = []
        for number, part in enumerate(message.content):
            param = f"messages.{index}.content.{number}"
            if part.type == "text":
                parts.append({"type": "text", "text": safe(part.text or "")})
                continue
            if part.image_url is None:
                raise OpenAIError(
                    400, "invalid_value", "image_url part without image_url", param=param
                )
            try:
                prepared = await decoder.prepare(_image_bytes(part.image_url.url, param), image)
            except InputError as exc:
                raise OpenAIError(400, "invalid_image", str(exc), param=param) from exc
            parts.append({"type": "image_url", "image_url": {"url": prepared.data_uri()}})
        messages.append({"role": role, "content": parts})
    return messages


def _options(chat: ChatRequest) -> GenerationOptions:
    stops = [chat.stop] if isinstance(chat.stop, str) else chat.stop or []
    grammar: str | None = None
    fmt = chat.response_format
    try:
        if fmt is not None and fmt.type == "json_object":
            grammar = json_grammar(None)
        elif fmt is not None and fmt.type == "json_schema" and fmt.json_schema is not None:
            grammar = json_grammar(fmt.json_schema.json_schema or {"type": "object"})
    except InvalidGrammarError as exc:
        raise OpenAIError(
            400, "invalid_value", str(exc), param="response_format.json_schema"
        ) from exc
    return GenerationOptions(
        stop=tuple(stops),
        frequency_penalty=chat.frequency_penalty or 0.0,
        presence_penalty=chat.presence_penalty or 0.0,
        grammar=grammar,
        logprobs=(chat.top_logprobs or 0) if chat.logprobs else None,
    )


def _sampling(chat: ChatRequest, defaults: SamplingSettings) -> SamplingSettings:
    updates: dict[str, Any] = {}
    for key in ("temperature", "top_p", "top_k", "seed"):
        if getattr(chat, key) is not None:
            updates[key] = getattr(chat, key)
    max_tokens = chat.max_completion_tokens or chat.max_tokens
    if max_tokens is not None:
        updates["max_tokens"] = max_tokens
    return defaults.model_copy(update=updates)


def _choice_seed(sampling: SamplingSettings, index: int) -> SamplingSettings:
    """Choice ``index`` of a seeded request: its own, reproducible seed."""
    if index == 0 or sampling.seed is None:
        return sampling
    return sampling.model_copy(update={"seed": (sampling.seed + index) % 2**32})


def _logprobs_json(entries: tuple[TokenLogprob, ...]) -> dict[str, Any]:
    return {
        "content": [
            {
                "token": entry.token,
                "logprob": entry.logprob,
                "bytes": list(entry.token_bytes),
                "top_logprobs": [
                    {"token": token, "logprob": value, "bytes": list(data)}
                    for token, data, value in entry.top
                ],
            }
            for entry in entries
        ],
        "refusal": None,
    }


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _finish(reason: str | None) -> str:
    return "length" if reason in (None, "length", "cancelled") else reason


def _context_error(exc: ContextLengthError) -> OpenAIError:
    return OpenAIError(400, "context_length_exceeded", str(exc), param="messages")


# ---------------------------------------------------------------- routes


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
    try:
        chat = await json_body(request, ChatRequest)
    except ValidationError as exc:
        raise _validation_error(exc) from exc
    except OpenAIError:
        raise
    except ApiError as exc:  # 415, malformed JSON
        raise OpenAIError(exc.status, exc.code, exc.message, headers=exc.headers) from exc
    _checked(chat)
    app = request.app
    settings = app[SETTINGS]
    bundle = app[BUNDLE]
    if chat.model not in (None, bundle.manifest.model_id):
        raise OpenAIError(
            404,
            "model_not_found",
            f"this box serves {bundle.manifest.model_id!r}",
            param="model",
        )
    _count_images(chat, settings.server.max_photos)
    options = _options(chat)
    # The request's values, then those set in the settings, then the bundle's defaults.
    sampling = _sampling(chat, effective_sampling(bundle.current, settings.engine.sampling))
    admission = app[ADMISSION]
    # The queue slot comes first: decoding and resizing images is work, too.
    if not admission.try_acquire():
        app[METRICS].rejected.inc()
        raise OpenAIError(
            503,
            "busy",
            "the model queue is full; try again shortly",
            headers={"Retry-After": str(settings.server.retry_after_seconds)},
        )
    try:
        messages = await _prepare_messages(chat, settings.image, app[STORE].decoder)
        model = app[RUNTIME].model
        if model is None:
            raise OpenAIError(
                503,
                "loading",
                "the model is still loading; try again shortly",
                headers={"Retry-After": "5"},
            )
        call = _Call(request, chat, model, messages, sampling, options)
        if chat.stream:
            return await call.stream()
        return await call.blocking()
    finally:
        admission.release()


class _Call:
    """One chat-completion request against the model."""

    def __init__(
        self,
        request: web.Request,
        chat: ChatRequest,
        model: Any,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings,
        options: GenerationOptions,
    ) -> None:
        self.request = request
        self.chat = chat
        self.model = model
        self.messages = messages
        self.sampling = sampling
        self.options = options
        self.choices = chat.n or 1
        self.images = ImageCache()  # the photos are encoded once for all choices
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model_id = request.app[BUNDLE].manifest.model_id
        self.metrics = request.app[METRICS]

    async def blocking(self) -> web.Response:
        generations: list[Generation] = []
        for index in range(self.choices):
            try:
                generation = await self.model.agenerate(
                    self.messages,
                    _choice_seed(self.sampling, index),
                    options=self.options,
                    image_cache=self.images,
                )
            except ContextLengthError as exc:
                raise _context_error(exc) from exc
            except InputError as exc:
                raise OpenAIError(400, "invalid_value", str(exc), param="messages") from exc
            self.metrics.observe_generation(
                "chat", generation.seconds, generation.completion_tokens
            )
            generations.append(generation)
        choices = []
        for index, generation in enumerate(generations):
            choice: dict[str, Any] = {
                "index": index,
                "finish_reason": _finish(generation.finish_reason),
                "message": {"role": "assistant", "content": generation.text, "refusal": None},
                "logprobs": None,
            }
            if generation.logprobs is not None:
                choice["logprobs"] = _logprobs_json(generation.logprobs)
            choices.append(choice)
        return web.json_response(
            {
                "id": self.id,
                "object": "chat.completion",
                "created": self.created,
                "model": self.model_id,
                "system_fingerprint": None,
                "choices": choices,
                "usage": _usage(
                    generations[0].prompt_tokens,
                    sum(g.completion_tokens for g in generations),
                ),
            }
        )

    def _event(self, payload: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()

    def _chunk(
        self,
        index: int,
        delta: dict[str, Any],
        finish: str | None,
        logprobs: tuple[TokenLogprob, ...] | None = None,
    ) -> bytes:
        choice: dict[str, Any] = {
            "index": index,
            "delta": delta,
            "finish_reason": finish,
            "logprobs": _logprobs_json(logprobs) if logprobs is not None else None,
        }
        payload: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": None,
            "choices": [choice],
        }
        if self.include_usage:
            payload["usage"] = None
        return self._event(payload)

    @property
    def include_usage(self) -> bool:
        return self.chat.stream_options is not None and self.chat.stream_options.include_usage

    def _pieces(self, index: int, results: list[Generation]) -> AsyncGenerator[Chunk, None]:
        chunks: AsyncGenerator[Chunk, None] = self.model.astream_chunks(
            self.messages,
            _choice_seed(self.sampling, index),
            results.append,
            options=self.options,
            image_cache=self.images,
        )
        return chunks

    async def stream(self) -> web.StreamResponse:
        """SSE. Headers go out with the first token, so a prompt that does not fit the
        context (found before any token) is still a plain 400."""
        response: web.StreamResponse | None = None
        started = time.perf_counter()
        prompt_tokens = completion_tokens = 0
        want_logprobs = self.options.logprobs is not None
        try:
            for index in range(self.choices):
                results: list[Generation] = []
                pieces = self._pieces(index, results)
                try:
                    first = True
                    async for chunk in pieces:
                        if response is None:
                            response = await self._open()
                        if first:
                            await response.write(
                                self._chunk(index, {"role": "assistant", "content": ""}, None)
                            )
                            first = False
                        await response.write(
                            self._chunk(
                                index,
                                {"content": chunk.text},
                                None,
                                chunk.logprobs if want_logprobs else None,
                            )
                        )
                finally:
                    await pieces.aclose()
                if response is None:
                    response = await self._open()
                if first:
                    await response.write(
                        self._chunk(index, {"role": "assistant", "content": ""}, None)
                    )
                generation = results[0]
                prompt_tokens = generation.prompt_tokens
                completion_tokens += generation.completion_tokens
                await response.write(self._chunk(index, {}, _finish(generation.finish_reason)))
            assert response is not None
            if self.include_usage:
                await response.write(
                    self._event(
                        {
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model_id,
                            "system_fingerprint": None,
                            "choices": [],
                            "usage": _usage(prompt_tokens, completion_tokens),
                        }
                    )
                )
            await response.write(b"data: [DONE]\n\n")
            self.metrics.observe_generation(
                "chat", time.perf_counter() - started, completion_tokens
            )
            return response
        except ConnectionResetError:
            # The client went away: generation was cancelled when the loop above was
            # left; there is nobody to answer and nothing worth a traceback.
            log.info("a streaming client disconnected")
            return response if response is not None else web.Response(status=499)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if response is None:  # nothing sent yet: an ordinary error answer
                if isinstance(exc, ContextLengthError):
                    raise _context_error(exc) from exc
                if isinstance(exc, InputError):
                    raise OpenAIError(400, "invalid_value", str(exc), param="messages") from exc
                raise
            return await self._fail(response, exc)

    async def _open(self) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(self.request)
        return response

    async def _fail(self, response: web.StreamResponse, exc: Exception) -> web.StreamResponse:
        """End a started stream with an error event (never a second HTTP response)."""
        if isinstance(exc, ContextLengthError):
            error = _context_error(exc)
        elif isinstance(exc, OpenAIError):
            error = exc
        else:
            log.error("a streamed completion failed: %s", type(exc).__name__)
            error = OpenAIError(500, "server_error", "the server could not finish this answer")
        try:
            await response.write(self._event(error.body()))
            await response.write_eof()
        except ConnectionResetError:
            pass
        return response
