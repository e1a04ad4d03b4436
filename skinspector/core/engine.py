"""The vision-language model: one ``llama_cpp.Llama`` with the Qwen2.5-VL mtmd handler.

All llama.cpp calls run on one dedicated worker thread owned by ``VisionLanguageModel``:
llama.cpp contexts are not thread-safe, and the event loop of the edge server must never
block on inference. Synchronous callers (CLI, evaluation) wait on the worker; asynchronous
callers (the server) await it; streaming callers get tokens through a queue.
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from skinspector.core.case_schema import Assessment, ClinicalContext, Language
from skinspector.core.errors import ModelError, ModelFileError, ModelMismatchError
from skinspector.core.gguf import check_gguf
from skinspector.core.imaging import PreparedImage
from skinspector.core.prompt import Reference, build_messages, parse_assessment
from skinspector.core.settings import EngineSettings, SamplingSettings

__all__ = ["Generation", "TokenStream", "VisionLanguageModel", "qwen_vl_handler_class"]

_END = object()
GENERATION_PROMPT = "<|im_start|>assistant\n"


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


@dataclass(frozen=True, slots=True)
class Generation:
    """One completed generation."""

    text: str
    finish_reason: str | None
    #: Prompt positions as llama-cpp-python reports them: text tokens plus, per image, the
    #: M-RoPE positions it spans (max(grid_w, grid_h)), not its (grid_w * grid_h) embeddings.
    prompt_tokens: int
    completion_tokens: int
    seconds: float

    def assessment(self, language: Language = Language.EN) -> Assessment:
        return parse_assessment(self.text, language)


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
                yield str(item)
        finally:
            self._cancel.set()

    def close(self) -> None:
        self._cancel.set()


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
            "verbose": self._verbose,
        }
        if self.settings.n_threads is not None:
            kwargs["n_threads"] = self.settings.n_threads
            kwargs["n_threads_batch"] = self.settings.n_threads
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
        return llm

    def _run(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings,
        on_piece: Callable[[str], None] | None,
        cancel: threading.Event | None,
    ) -> Generation:
        started = time.perf_counter()
        request: dict[str, Any] = {
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": sampling.top_k,
            "repeat_penalty": sampling.repeat_penalty,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        text: list[str] = []
        finish_reason: str | None = None
        completion_tokens = 0
        try:
            if on_piece is None:
                response = self._llm.create_chat_completion(**request)
                choice = response["choices"][0]
                text.append(choice["message"]["content"] or "")
                finish_reason = choice["finish_reason"]
                completion_tokens = int(response["usage"]["completion_tokens"])
                prompt_tokens = int(response["usage"]["prompt_tokens"])
            else:
                for chunk in self._llm.create_chat_completion(stream=True, **request):
                    choice = chunk["choices"][0]
                    piece = choice["delta"].get("content")
                    if piece:
                        text.append(piece)
                        completion_tokens += 1
                        on_piece(piece)
                    finish_reason = choice.get("finish_reason") or finish_reason
                    if cancel is not None and cancel.is_set():
                        finish_reason = "cancelled"
                        break
                # Streaming responses carry no usage block; the KV state holds the count.
                prompt_tokens = int(self._llm.n_tokens) - completion_tokens + 1
        except ValueError as exc:  # prompt over n_ctx, image the projector cannot take
            raise ModelError(f"llama.cpp could not run this request: {exc}") from exc
        return Generation(
            text="".join(text),
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            seconds=time.perf_counter() - started,
        )

    # ---------------------------------------------------------------- caller side

    def _submit(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None,
        on_piece: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Future[Generation]:
        if self._closed:
            raise ModelError("the model has been closed")
        return self._executor.submit(
            self._run, messages, sampling or self.settings.sampling, on_piece, cancel
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
        self, messages: list[dict[str, Any]], sampling: SamplingSettings | None = None
    ) -> Generation:
        """Blocking generation from prepared chat messages (see ``build_messages``)."""
        return self._submit(messages, sampling).result()

    async def agenerate(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
    ) -> Generation:
        """Awaitable generation from prepared messages; the event loop stays free."""
        return await asyncio.wrap_future(self._submit(messages, sampling))

    async def astream(
        self,
        messages: list[dict[str, Any]],
        sampling: SamplingSettings | None = None,
        on_result: Callable[[Generation], None] | None = None,
    ) -> AsyncIterator[str]:
        """Async iterator of text pieces; stopping early cancels generation. ``on_result``
        receives the finished ``Generation`` (finish reason, token counts) at the end."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def on_piece(piece: str) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, piece)

        future = asyncio.wrap_future(self._submit(messages, sampling, on_piece, cancel))
        future.add_done_callback(lambda _: pieces.put_nowait(_END))
        try:
            while True:
                item = await pieces.get()
                if item is _END:
                    break
                yield str(item)
            generation = await future  # re-raise a worker error
            if on_result is not None:
                on_result(generation)
        finally:
            cancel.set()

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
        self._executor.submit(self._llm.close).result()
        self._executor.shutdown(wait=True)

    def __enter__(self) -> VisionLanguageModel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
