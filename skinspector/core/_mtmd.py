"""Narrow access to llama.cpp's multimodal tokenizer (mtmd) through llama-cpp-python.

Used for introspection only (how many tokens an image costs). It touches the chat
handler's mtmd context, which llama-cpp-python 0.3.36 (pinned) keeps as attributes.
Call only on the engine's worker thread.
"""

from __future__ import annotations

import ctypes
from typing import Any

from skinspector.core.errors import ModelError

__all__ = ["image_token_count"]


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
