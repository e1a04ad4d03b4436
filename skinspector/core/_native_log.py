"""Route llama.cpp / mtmd native logging into Python logging, without prompt text.

llama.cpp's info and debug output echoes the rendered prompt (clinical notes included) and
token dumps; patient data must not reach logs, so only warnings and errors are forwarded,
to the ``skinspector.native`` logger. Installed once per process, idempotently.
"""

from __future__ import annotations

import ctypes
import logging
import threading

__all__ = ["install_native_log_filter"]

_LOGGER = logging.getLogger("skinspector.native")
# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5
_WARN, _ERROR = 3, 4
_lock = threading.Lock()
_installed: list[object] = []  # keeps the ctypes callback alive


def _forward(level: int, text: bytes | None, _user_data: object) -> None:
    if text is None or level not in (_WARN, _ERROR):
        return
    message = text.decode("utf-8", "replace").rstrip()
    if message:
        _LOGGER.log(logging.WARNING if level == _WARN else logging.ERROR, "%s", message)


def install_native_log_filter() -> None:
    with _lock:
        if _installed:
            return
        import llama_cpp
        import llama_cpp.mtmd_cpp as mtmd

        callback = llama_cpp.llama_log_callback(_forward)
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        mtmd.mtmd_log_set(callback, ctypes.c_void_p(0))
        mtmd.mtmd_helper_log_set(callback, ctypes.c_void_p(0))
        _installed.append(callback)
