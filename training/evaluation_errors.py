"""Errors of the evaluation tools (metrics, ablation comparison, report, checkpoint review).

Split by who is at fault: ``EvaluationInputError`` is the caller's (a missing or malformed
evaluation folder, example sets that differ, a bad marks file) and maps to CLI exit status
2; ``WordNetUnavailableError`` is the machine's set-up (exit status 1).
"""

from __future__ import annotations

from skinspector.core.errors import InputError, SkinspectorError

__all__ = ["EvaluationError", "EvaluationInputError", "WordNetUnavailableError"]


class EvaluationError(SkinspectorError):
    """Base class of evaluation errors."""


class EvaluationInputError(EvaluationError, InputError):
    """An evaluation input (folder, records, marks) is missing, malformed or inconsistent."""


class WordNetUnavailableError(EvaluationError):
    """METEOR needs WordNet and its files are not installed."""
