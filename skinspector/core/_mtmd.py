"""Narrow access to llama.cpp through llama-cpp-python's lower-level API (0.3.36, pinned).

``Decoder`` evaluates a chat prompt the way llama-cpp-python's Qwen2.5-VL chat handler
does (same template, same multimodal tokenizer, same chunk order) but encodes each photo
through an ``ImageCache``, then samples and decodes one token at a time. It touches the
chat handler's mtmd context, which llama-cpp-python keeps as attributes. Use only on the
engine's worker thread.
"""

from __future__ import annotations

import base64
import ctypes
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from skinspector.core.errors import ModelError

if TYPE_CHECKING:
    from skinspector.core.engine import GenerationOptions, ImageCache, TokenLogprob
    from skinspector.core.settings import SamplingSettings

__all__ = ["Decoder", "PromptError", "PromptInfo", "image_token_count"]


class PromptError(Exception):
    """The messages cannot be made into a prompt (an image that is not a data: URI...)."""


@dataclass(frozen=True, slots=True)
class PromptInfo:
    tokens: int  # text tokens + image embeddings
    positions: int  # KV positions (M-RoPE: an image spans max(grid_w, grid_h))


def _image_urls(messages: list[dict[str, Any]]) -> list[str]:
    """Image URLs of user turns, in order (as llama-cpp-python's handler collects them)."""
    urls: list[str] = []
    for message in messages:
        content = message.get("content")
        if message.get("role") != "user" or not isinstance(content, list):
            continue
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                image_url = part.get("image_url")
                urls.append(image_url["url"] if isinstance(image_url, dict) else str(image_url))
    return urls


def _image_bytes(url: str) -> bytes:
    if url.startswith("data:"):
        try:
            return base64.b64decode(url.split(",", 1)[1])
        except (IndexError, ValueError) as exc:
            raise PromptError("an image data: URI is not valid base64") from exc
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse
        from urllib.request import url2pathname

        path = url2pathname(unquote(urlparse(url).path))
        try:
            with open(path, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise PromptError("an image file cannot be read") from exc
    raise PromptError("images must be data: URIs or file:// URLs")


def render_prompt(messages: list[dict[str, Any]], chat_format: str, default_system: str) -> str:
    """The prompt text llama-cpp-python's handler renders (image URLs still in place)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    first_system = next((m for m in messages if m.get("role") == "system"), None)
    if first_system is None or not first_system.get("content"):
        messages = [{"role": "system", "content": default_system}, *messages]
    template = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(
        chat_format
    )
    return str(template.render(messages=messages, add_generation_prompt=True))


class Decoder:
    """Token-level driver of one ``Llama`` (and its Qwen2.5-VL chat handler)."""

    def __init__(self, llm: Any) -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.llm = llm
        self.handler = llm.chat_handler
        self.mtmd = self.handler._mtmd_cpp
        self.n_ctx = int(llm.n_ctx())
        self.n_vocab = int(llm.n_vocab())
        self.n_embd = int(llama_cpp.llama_model_n_embd_inp(llm.model))
        self.vocab = llama_cpp.llama_model_get_vocab(llm.model)
        self._piece_buffer = ctypes.create_string_buffer(64)
        self._batch = llama_cpp.llama_batch_init(1, 0, 1)
        self._piece_cache: dict[int, bytes] = {}

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    # ------------------------------------------------------------------ prompt

    def evaluate_prompt(
        self, messages: list[dict[str, Any]], chat_format: str, cache: ImageCache
    ) -> PromptInfo:
        """Clear the KV cache and evaluate ``messages``; photos come from ``cache`` or are
        encoded (and then cached). Raises ``PromptError`` for unusable messages and
        returns before evaluating anything when the prompt would not fit the context."""
        mtmd, llm, lib = self.mtmd, self.llm, self._lib
        if self.handler.mtmd_ctx is None:
            raise ModelError("the vision projector is not loaded")
        urls = _image_urls(messages)
        text = render_prompt(messages, chat_format, self.handler.DEFAULT_SYSTEM_MESSAGE)
        marker = mtmd.mtmd_default_marker().decode("utf-8")
        for url in urls:
            text = text.replace(url, marker)
        images = [_image_bytes(url) for url in urls]
        bitmaps = []
        try:
            for data in images:
                try:
                    bitmap = self.handler._create_bitmap_from_bytes(data)
                except ValueError as exc:
                    raise PromptError("an image cannot be decoded") from exc
                bitmaps.append(bitmap)
                mtmd.mtmd_bitmap_set_id(bitmap, hashlib.sha256(data).hexdigest().encode())
            prompt_bytes = text.encode("utf-8")
            source = mtmd.mtmd_input_text()
            source.text = prompt_bytes
            source.text_len = len(prompt_bytes)
            source.add_special = True
            source.parse_special = True
            chunks = mtmd.mtmd_input_chunks_init()
            if chunks is None:
                raise ModelError("llama.cpp could not allocate input chunks")
            try:
                array = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
                status = mtmd.mtmd_tokenize(
                    self.handler.mtmd_ctx, chunks, ctypes.byref(source), array, len(bitmaps)
                )
                if status != 0:
                    raise PromptError(f"llama.cpp could not tokenize the prompt (status {status})")
                info = PromptInfo(
                    tokens=int(mtmd.mtmd_helper_get_n_tokens(chunks)),
                    positions=int(mtmd.mtmd_helper_get_n_pos(chunks)),
                )
                if info.tokens >= self.n_ctx:  # every image embedding takes a KV cell
                    return info  # the caller refuses it; nothing was evaluated
                llm.reset()
                memory = lib.llama_get_memory(llm.ctx)
                if memory is not None:
                    lib.llama_memory_clear(memory, True)
                for index in range(mtmd.mtmd_input_chunks_size(chunks)):
                    self._evaluate_chunk(mtmd.mtmd_input_chunks_get(chunks, index), cache)
                return info
            finally:
                mtmd.mtmd_input_chunks_free(chunks)
        finally:
            for bitmap in bitmaps:
                mtmd.mtmd_bitmap_free(bitmap)

    def _evaluate_chunk(self, chunk: Any, cache: ImageCache) -> None:
        mtmd, llm, lib = self.mtmd, self.llm, self._lib
        kind = mtmd.mtmd_input_chunk_get_type(chunk)
        if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
            count = ctypes.c_size_t()
            pointer = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
            if pointer and count.value > 0:
                llm.eval([pointer[i] for i in range(count.value)])
            return
        if kind != mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
            raise PromptError("only text and images are supported")
        n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
        key = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode() or None
        embedding = cache.get(key) if key else None
        if embedding is None:
            status = mtmd.mtmd_encode_chunk(self.handler.mtmd_ctx, chunk)
            if status != 0:
                raise ModelError(f"the vision encoder failed (status {status})")
            output = mtmd.mtmd_get_output_embd(self.handler.mtmd_ctx)
            embedding = np.ctypeslib.as_array(output, shape=(n_tokens * self.n_embd,)).copy()
            if key:
                cache.put(key, embedding)
            else:
                cache.encoded += 1
        new_n_past = lib.llama_pos(0)
        status = mtmd.mtmd_helper_decode_image_chunk(
            self.handler.mtmd_ctx,
            llm.ctx,
            chunk,
            embedding.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            lib.llama_pos(llm.n_tokens),
            lib.llama_seq_id(0),
            llm.n_batch,
            ctypes.byref(new_n_past),
            mtmd.mtmd_helper_post_decode_callback(),  # NULL: no callback
            None,
        )
        if status != 0:
            raise ModelError(f"llama.cpp could not decode an image (status {status})")
        llm.n_tokens = int(new_n_past.value)

    # ------------------------------------------------------------------ generation

    def sampler(
        self,
        sampling: SamplingSettings,
        options: GenerationOptions,
        seed: int,
        *,
        min_p: float,
    ) -> Any:
        """The sampler chain llama-cpp-python builds (penalties, grammar, top-k, typical,
        top-p, min-p, temperature, seeded distribution; greedy at temperature 0)."""
        from llama_cpp._internals import LlamaSampler

        chain: Any = LlamaSampler()  # type: ignore[no-untyped-call]
        try:
            chain.add_penalties(
                n_vocab=self.n_vocab,
                penalty_last_n=int(self.llm.last_n_tokens_size),
                penalty_repeat=sampling.repeat_penalty,
                penalty_freq=options.frequency_penalty,
                penalty_present=options.presence_penalty,
            )
            if options.grammar is not None:
                grammar = self._lib.llama_sampler_init_grammar(
                    self.vocab, options.grammar.encode("utf-8"), b"root"
                )
                if not grammar:
                    raise PromptError("the grammar could not be parsed")
                self._lib.llama_sampler_chain_add(chain.sampler, grammar)
            if sampling.temperature == 0.0:
                chain.add_greedy()
            else:
                chain.add_top_k(sampling.top_k)
                chain.add_typical(1.0, 1)
                chain.add_top_p(sampling.top_p, 1)
                chain.add_min_p(min_p, 1)
                chain.add_temp(sampling.temperature)
                chain.add_dist(seed)
        except BaseException:
            chain.close()
            raise
        return chain

    @staticmethod
    def free_sampler(chain: Any) -> None:
        chain.close()

    def sample(self, chain: Any) -> int:
        return int(self._lib.llama_sampler_sample(chain.sampler, self.llm.ctx, -1))

    def is_end(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    def piece(self, token: int) -> bytes:
        """The bytes of one token (special tokens render empty, as llama-cpp-python's
        detokenize does)."""
        cached = self._piece_cache.get(token)
        if cached is not None:
            return cached
        buffer = self._piece_buffer
        size = self._lib.llama_token_to_piece(self.vocab, token, buffer, len(buffer), 0, False)
        if size < 0:
            buffer = ctypes.create_string_buffer(-size)
            size = self._lib.llama_token_to_piece(self.vocab, token, buffer, -size, 0, False)
        data = buffer.raw[:size]
        if len(self._piece_cache) < 200_000:
            self._piece_cache[token] = data
        return data

    def decode_one(self, token: int, position: int) -> None:
        """Evaluate one generated token at ``position`` (logits for the next sample)."""
        batch = self._batch
        batch.n_tokens = 1
        batch.token[0] = token
        batch.pos[0] = position
        batch.n_seq_id[0] = 1
        batch.seq_id[0][0] = 0
        batch.logits[0] = True
        status = self._lib.llama_decode(self.llm.ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")
        self.llm.n_tokens = position + 1

    def logprob(self, token: int, top: int) -> TokenLogprob:
        """The model's log-probability of ``token`` (and the ``top`` likeliest tokens)
        from the logits it was sampled from."""
        from skinspector.core.engine import TokenLogprob

        pointer = self._lib.llama_get_logits_ith(self.llm.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64)
        peak = float(logits.max())
        logsum = peak + float(np.log(np.exp(logits - peak).sum()))
        alternatives: list[tuple[str, bytes, float]] = []
        if top > 0:
            best = np.argpartition(-logits, top)[:top]
            for index in best[np.argsort(-logits[best])]:
                data = self.piece(int(index))
                value = float(logits[index]) - logsum
                alternatives.append((data.decode("utf-8", "ignore"), data, value))
        data = self.piece(token)
        return TokenLogprob(
            token=data.decode("utf-8", "ignore"),
            token_bytes=data,
            logprob=float(logits[token]) - logsum,
            top=tuple(alternatives),
        )


def image_token_count(llm: Any, encoded_image: bytes) -> int:
    """Tokens llama.cpp gives the image chunk(s) of one encoded image."""
    handler = llm.chat_handler
    mtmd = handler._mtmd_cpp
    if handler.mtmd_ctx is None:
        raise ModelError("the vision projector is not loaded")
    bitmap = handler._create_bitmap_from_bytes(encoded_image)
    try:
        marker = mtmd.mtmd_default_marker()
        text = mtmd.mtmd_input_text()
        text.text = marker
        text.text_len = len(marker)
        text.add_special = False
        text.parse_special = True
        chunks = mtmd.mtmd_input_chunks_init()
        try:
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            status = mtmd.mtmd_tokenize(handler.mtmd_ctx, chunks, ctypes.byref(text), bitmaps, 1)
            if status != 0:
                raise ModelError(f"llama.cpp could not tokenize the image (status {status})")
            total = 0
            for index in range(mtmd.mtmd_input_chunks_size(chunks)):
                chunk = mtmd.mtmd_input_chunks_get(chunks, index)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE:
                    total += int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))
            return total
        finally:
            mtmd.mtmd_input_chunks_free(chunks)
    finally:
        mtmd.mtmd_bitmap_free(bitmap)
