"""The vision-language model: one ``llama_cpp.Llama`` with the Qwen2.5-VL mtmd handler.

All llama.cpp calls run on one dedicated worker thread owned by ``VisionLanguageModel``:
llama.cpp contexts are not thread-safe, and the event loop of the edge server must never
block on inference. Synchronous callers (CLI, evaluation) wait on the worker; asynchronous
callers (the server) await it; streaming callers get tokens through a queue.

Generation drives llama.cpp token by token (``skinspector.core._mtmd`` evaluates the
prompt: text through ``Llama.eval``, photos through the projector) and turns token bytes
into text with an incremental UTF-8 decoder, so the cost of one generated token does not
depend on the prompt's length (llama-cpp-python's own streaming re-detokenizes the prompt
for every piece). Photo embeddings can be kept in an ``ImageCache`` and reused: the two
passes of one case run the vision encoder once per photo.
"""

from __future__ import annotations

import asyncio
import codecs
import functools
import os
import queue
import random
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skinspector.core.case_schema import Assessment, ClinicalContext, Language
from skinspector.core.errors import InputError, ModelError, ModelFileError, ModelMismatchError
from skinspector.core.gguf import check_gguf
from skinspector.core.imaging import PreparedImage
from skinspector.core.prompt import Reference, build_messages, parse_assessment
from skinspector.core.settings import EngineSettings, SamplingSettings

__all__ = [
    "Chunk",
    "ContextLengthError",
    "Generation",
    "GenerationOptions",
    "ImageCache",
    "InvalidGrammarError",
    "TokenLogprob",
    "TokenStream",
    "VisionLanguageModel",
    "default_threads",
    "qwen_vl_handler_class",
]

_END = object()
GENERATION_PROMPT = "<|im_start|>assistant\n"
#: llama.cpp's min_p defaults to 0.05; the report's sampling has no min-p cut-off.
MIN_P = 0.0


def default_threads() -> int:
    """CPU threads this process may run on (its affinity mask, not the machine's cores)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


@functools.cache
def qwen_vl_handler_class() -> Any:
    """llama-cpp-python's Qwen2.5-VL chat handler with the generation prompt fixed.

    llama-cpp-python renders its template with Jinja's default of dropping the template's
    final newline, so its prompt ends "<|im_start|>assistant" while Qwen's own template (the
    one training uses) ends "<|im_start|>assistant\\n". An explicit expression keeps the
    newline: training and inference prompts are byte-identical (tests/training checks it).
    """
    from llama_cpp.llama_chat_format import Qwen25VLChatHandler

    upstream: str = Qwen25VLChatHandler.CHAT_FORMAT
    if not upstream.endswith(GENERATION_PROMPT):
        raise ModelError("llama-cpp-python's Qwen2.5-VL template changed; re-check the prompt")

    class QwenVLHandler(Qwen25VLChatHandler):
        CHAT_FORMAT = upstream.removesuffix(GENERATION_PROMPT) + "<|im_start|>assistant{{ '\\n' }}"

    return QwenVLHandler


class ContextLengthError(InputError):
    """The prompt (text and image tokens) does not fit the context window."""

    def __init__(self, prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(
            f"this model's maximum context length is {n_ctx} tokens; the messages "
            f"(text and images) take {prompt_tokens}, leaving no room for a completion"
        )
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class InvalidGrammarError(InputError):
    """A response format (JSON schema) that llama.cpp cannot turn into a grammar."""


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Per-request options beyond ``SamplingSettings`` (the OpenAI-compatible surface)."""

    stop: tuple[str, ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    #: A GBNF grammar the output must follow (see ``json_grammar``).
    grammar: str | None = None
    #: None: no log-probabilities; N >= 0: each token's, with N top alternatives.
    logprobs: int | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    token_bytes: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streamed piece of text and the log-probabilities of the tokens behind it."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Generation:
    """One completed generation."""

    text: str
    finish_reason: str | None
    #: Tokens of the prompt: text tokens plus every image embedding (grid_w * grid_h).
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    #: Positions the prompt occupies in the KV cache: text tokens plus, per image, the
    #: M-RoPE positions it spans (max(grid_w, grid_h)), not its (grid_w * grid_h) embeddings.
    prompt_positions: int = 0
    #: Seconds until the first token was sampled (prompt evaluation, image encoding).
    prompt_seconds: float = 0.0
    #: Seconds spent inside llama_decode for generated tokens.
    decode_seconds: float = 0.0
    #: Vision-encoder runs this generation needed (0 when every photo came from a cache).
    images_encoded: int = 0
    logprobs: tuple[TokenLogprob, ...] | None = None

    def assessment(self, language: Language = Language.EN) -> Assessment:
        return parse_assessment(self.text, language)


class ImageCache:
    """Image embeddings by content hash, reused across generations (one case's two passes,
    several choices of one request). Touched only on the engine's worker thread; dropping
    it frees the embeddings."""

    def __init__(self, max_images: int = 8) -> None:
        self.max_images = max_images
        self._entries: dict[str, Any] = {}
        self.encoded = 0
        self.reused = 0

    def get(self, key: str) -> Any:
        found = self._entries.get(key)
        if found is not None:
            self.reused += 1
        return found

    def put(self, key: str, embedding: Any) -> None:
        self.encoded += 1
        if len(self._entries) >= self.max_images:
            self._entries.pop(next(iter(self._entries)))
        self._entries[key] = embedding

    def __len__(self) -> int:
        return len(self._entries)


class TokenStream:
    """Iterator over generated text pieces; ``result`` holds the ``Generation`` at the end.

    Leaving the loop early (``break``, an exception, ``close()``) stops generation on the
    worker at the next token.
    """

    def __init__(self, pieces: queue.Queue[object], cancel: threading.Event) -> None:
        self._pieces = pieces
        self._cancel = cancel
        self.result: Generation | None = None

    def __iter__(self) -> Iterator[str]:
        try:
            while True:
                item = self._pieces.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, Generation):
                    self.result = item
                    continue
                assert isinstance(item, Chunk)
                yield item.text
        finally:
            self._cancel.set()

    def close(self) -> None:
        self._cancel.set()


@dataclass
class _StopFilter:
    """Holds back text that could be the start of a stop string; finds the first stop."""

    stops: tuple[str, ...]
    pending: str = ""
    longest: int = field(init=False)

    def __post_init__(self) -> None:
        self.longest = max((len(s) for s in self.stops), default=0)

    def feed(self, text: str) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string ended the output."""
        if not self.stops:
            return text, False
        self.pending += text
        hits = [i for i in (self.pending.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.pending = self.pending[: min(hits)], ""
            return out, True
        keep = 0
        tail = self.pending[-self.longest :]
        for size in range(min(len(tail), self.longest - 1), 0, -1):
            if any(s.startswith(tail[-size:]) for s in self.stops):
                keep = size
                break
        cut = len(self.pending) - keep
        out, self.pending = self.pending[:cut], self.pending[cut:]
        return out, False

    def flush(self) -> str:
        out, self.pending = self.pending, ""
        return out


def json_grammar(schema: dict[str, Any] | None) -> str:
    """A GBNF grammar for any JSON object (``schema`` None) or for a JSON schema."""
    import json

    from llama_cpp import llama_grammar

    if schema is None:
        return str(llama_grammar.JSON_GBNF)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as exc:  # the converter raises bare exceptions on unsupported schemas
        raise InvalidGrammarError(f"this JSON schema cannot be enforced: {exc}") from exc


class VisionLanguageModel:
    """Owns one llama.cpp model + vision projector and the thread that runs them."""

    def __init__(
        self,
        model_path: Path,
        mmproj_path: Path,
        settings: EngineSettings | None = None,
        *,
        verbose: bool = False,
    ) -> None:
        self.settings = settings or EngineSettings()
        self.model_path = check_gguf(model_path, "language model")
        self.mmproj_path = check_gguf(mmproj_path, "vision projector")
        self._verbose = verbose
        #: Generation and prompt (batch) threads: the settings' ``n_threads`` or every CPU
        #: this process may use (llama-cpp-python's own default is half the cores).
        self.n_threads = self.settings.n_threads or default_threads()
        self.n_threads_batch = self.n_threads
        #: Vision-encoder runs since load (read from any thread; written on the worker).
        self.encoder_runs = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="skinspector-vlm")
        self._closed = False
        try:
            self._llm: Any = self._executor.submit(self._load).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            raise

    # ---------------------------------------------------------------- worker-thread side

    def _load(self) -> Any:
        from llama_cpp import Llama

        from skinspector.core._native_log import install_native_log_filter

        install_native_log_filter()

        handler = qwen_vl_handler_class()(clip_model_path=str(self.mmproj_path), verbose=False)
        kwargs: dict[str, Any] = {
            "model_path": str(self.model_path),
            "chat_handler": handler,
            "n_ctx": self.settings.n_ctx,
            "n_gpu_layers": self.settings.n_gpu_layers,
            "n_threads": self.n_threads,
            "n_threads_batch": self.n_threads_batch,
            "verbose": self._verbose,
        }
        try:
            llm = Llama(**kwargs)
        except ValueError as exc:  # llama-cpp-python's "Failed to load model from file"
            raise ModelFileError(f"llama.cpp cannot load {self.model_path}: {exc}") from exc
        try:
            # Load the projector now, not on the first photo: a projector that does not fit
            # the model (embedding width, architecture) fails here.
            handler._init_mtmd_context(llm)
        except ValueError as exc:
            llm.close()
            raise ModelMismatchError(
                f"the vision projector {self.mmproj_path.name} does not fit the language model "
                f"{self.model_path.name}"
            ) from exc
        from skinspector.core._mtmd import Decoder

        # A seed=None request continues llama-cpp-python's seed chain, as before.
        self._seed = int(getattr(llm, "_seed", 0xFFFFFFFF))
        self._decoder = Decoder(llm)
        return llm

    def _next_seed(self, seed: int | None) -> int:
        if seed is None:
            seed = random.Random(self._seed).randint(0, 2**32)  # noqa: S311 (sampling)
        self._seed = seed
        return seed

    def _run(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings,
        options: GenerationOptions,
        on_piece: Callable[[Chunk], None] | None,
        cancel: threading.Event | None,
        cache: ImageCache | None,
    ) -> Generation:
        from skinspector.core._mtmd import PromptError

        started = time.perf_counter()
        decoder = self._decoder
        cache = cache if cache is not None else ImageCache()
        encoded_before = cache.encoded
        try:
            prompt = decoder.evaluate_prompt(messages, qwen_vl_handler_class().CHAT_FORMAT, cache)
        except PromptError as exc:
            raise InputError(str(exc)) from exc
        if prompt.tokens >= decoder.n_ctx:  # each image embedding takes one KV cell
            raise ContextLengthError(prompt.tokens, decoder.n_ctx)
        images_encoded = cache.encoded - encoded_before
        self.encoder_runs += images_encoded
        max_tokens = min(sampling.max_tokens, decoder.n_ctx - prompt.tokens)
        try:
            sampler = decoder.sampler(
                sampling, options, self._next_seed(sampling.seed), min_p=MIN_P
            )
        except PromptError as exc:  # a grammar llama.cpp cannot parse
            raise InvalidGrammarError(str(exc)) from exc
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="ignore")
        stops = _StopFilter(options.stop)
        want_logprobs = options.logprobs is not None
        top_n = options.logprobs or 0
        text: list[str] = []
        pending_logprobs: list[TokenLogprob] = []
        all_logprobs: list[TokenLogprob] = []
        finish_reason = "length"
        completion_tokens = 0
        decode_seconds = 0.0
        prompt_seconds = 0.0
        position = prompt.positions
        stopped_by_string = False

        def emit(piece: str) -> None:
            if not piece and not pending_logprobs:
                return
            chunk = Chunk(piece, tuple(pending_logprobs))
            all_logprobs.extend(pending_logprobs)
            pending_logprobs.clear()
            if piece:
                text.append(piece)
            if on_piece is not None and (piece or chunk.logprobs):
                on_piece(chunk)

        try:
            while completion_tokens < max_tokens:
                token = decoder.sample(sampler)
                if completion_tokens == 0:
                    prompt_seconds = time.perf_counter() - started
                if want_logprobs:
                    pending_logprobs.append(decoder.logprob(token, top_n))
                if decoder.is_end(token):
                    if pending_logprobs and want_logprobs:
                        pending_logprobs.pop()  # the end token is not part of the answer
                    finish_reason = "stop"
                    break
                completion_tokens += 1
                piece, stopped = stops.feed(utf8.decode(decoder.piece(token)))
                emit(piece)
                if stopped:
                    finish_reason, stopped_by_string = "stop", True
                    break
                if cancel is not None and cancel.is_set():
                    finish_reason = "cancelled"
                    break
                if completion_tokens >= max_tokens:
                    break
                tick = time.perf_counter()
                decoder.decode_one(token, position)
                decode_seconds += time.perf_counter() - tick
                position += 1
            if not stopped_by_string:
                tail, stopped = stops.feed(utf8.decode(b"", final=True))
                emit(tail + ("" if stopped else stops.flush()))
                if stopped:
                    finish_reason = "stop"
            emit("")  # log-probabilities of tokens that added no text
        except RuntimeError as exc:  # llama_decode failed (out of KV slots...)
            raise ModelError(f"llama.cpp could not run this request: {type(exc).__name__}") from exc
        finally:
            decoder.free_sampler(sampler)
        return Generation(
            text="".join(text),
            finish_reason=finish_reason,
            prompt_tokens=prompt.tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - started,
            prompt_positions=prompt.positions,
            prompt_seconds=prompt_seconds,
            decode_seconds=decode_seconds,
            images_encoded=images_encoded,
            logprobs=tuple(all_logprobs) if want_logprobs else None,
        )

    # ---------------------------------------------------------------- caller side

    def _submit(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None,
        on_piece: Callable[[Chunk], None] | None = None,
        cancel: threading.Event | None = None,
        *,
        options: GenerationOptions | None = None,
        image_cache: ImageCache | None = None,
    ) -> Future[Generation]:
        if self._closed:
            raise ModelError("the model has been closed")
        return self._executor.submit(
            self._run,
            messages,
            sampling or self.settings.sampling,
            options or GenerationOptions(),
            on_piece,
            cancel,
            image_cache,
        )

    @staticmethod
    def messages(
        image: PreparedImage | Sequence[PreparedImage],
        context: ClinicalContext | None = None,
        references: Sequence[Reference] = (),
    ) -> list[dict[str, Any]]:
        images = [image] if isinstance(image, PreparedImage) else list(image)
        return build_messages([i.data_uri() for i in images], context, references)

    def generate(
        self,
        image: PreparedImage | Sequence[PreparedImage],
        context: ClinicalContext | None = None,
        references: Sequence[Reference] = (),
        sampling: SamplingSettings | None = None,
    ) -> Generation:
        """Blocking generation (CLI, evaluation). Do not call from an event loop."""
        return self._submit(self.messages(image, context, references), sampling).result()

    def stream(
        self,
        image: PreparedImage | Sequence[PreparedImage],
        context: ClinicalContext | None = None,
        references: Sequence[Reference] = (),
        sampling: SamplingSettings | None = None,
    ) -> TokenStream:
        """Blocking streaming: iterate the returned ``TokenStream`` for text pieces."""
        pieces: queue.Queue[object] = queue.Queue()
        cancel = threading.Event()
        future = self._submit(
            self.messages(image, context, references), sampling, pieces.put, cancel
        )

        def finish(done: Future[Generation]) -> None:
            error = done.exception()
            pieces.put(error if error is not None else done.result())
            pieces.put(_END)

        future.add_done_callback(finish)
        return TokenStream(pieces, cancel)

    def complete(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
        *,
        options: GenerationOptions | None = None,
        image_cache: ImageCache | None = None,
    ) -> Generation:
        """Blocking generation from prepared chat messages (see ``build_messages``)."""
        return self._submit(messages, sampling, options=options, image_cache=image_cache).result()

    async def agenerate(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
        *,
        options: GenerationOptions | None = None,
        image_cache: ImageCache | None = None,
    ) -> Generation:
        """Awaitable generation from prepared messages; the event loop stays free."""
        return await asyncio.wrap_future(
            self._submit(messages, sampling, options=options, image_cache=image_cache)
        )

    async def astream_chunks(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
        on_result: Callable[[Generation], None] | None = None,
        *,
        options: GenerationOptions | None = None,
        image_cache: ImageCache | None = None,
    ) -> AsyncGenerator[Chunk, None]:
        """Async iterator of ``Chunk``s; stopping early cancels generation. ``on_result``
        receives the finished ``Generation`` (finish reason, token counts) at the end."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def on_piece(piece: Chunk) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        future = asyncio.wrap_future(
            self._submit(
                messages, sampling, on_piece, cancel, options=options, image_cache=image_cache
            )
        )
        future.add_done_callback(lambda _: pieces.put_nowait(_END))
        try:
            while True:
                item = await pieces.get()
                if item is _END:
                    break
                assert isinstance(item, Chunk)
                yield item
            generation = await future  # re-raise a worker error
            if on_result is not None:
                on_result(generation)
        finally:
            cancel.set()
            if not future.done():
                # Leave no "exception was never retrieved" behind when the caller stops.
                future.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def astream(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
        on_result: Callable[[Generation], None] | None = None,
        *,
        options: GenerationOptions | None = None,
        image_cache: ImageCache | None = None,
    ) -> AsyncIterator[str]:
        """Async iterator of text pieces (see ``astream_chunks``)."""
        chunks = self.astream_chunks(
            messages, sampling, on_result, options=options, image_cache=image_cache
        )
        try:
            async for chunk in chunks:
                if chunk.text:
                    yield chunk.text
        finally:
            await chunks.aclose()

    def count_image_tokens(self, image: PreparedImage) -> int:
        """How many tokens llama.cpp's vision encoder produces for ``image``."""
        from skinspector.core._mtmd import image_token_count

        if self._closed:
            raise ModelError("the model has been closed")
        return self._executor.submit(image_token_count, self._llm, image.jpeg).result()

    def close(self) -> None:
        """Free llama.cpp resources (on the worker thread) and stop the worker."""
        if self._closed:
            return
        self._closed = True

        def release() -> None:
            self._decoder.close()
            self._llm.close()

        self._executor.submit(release).result()
        self._executor.shutdown(wait=True)

    def __enter__(self) -> VisionLanguageModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
