"""Shared CLI plumbing: settings loaded once, error translation, shared options."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skinspector.core.errors import InputError, SkinspectorError
from skinspector.core.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure reported as one clear line, no traceback."""

    exit_code = 1


class CliInputError(CliError):
    """The user's input was unusable (exit status 2, like a usage error)."""

    exit_code = 2


def translate_errors(func: F) -> F:
    """Turn project errors into CLI messages: input errors exit 2, the rest exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            raise CliInputError(f"bad input: {exc}") from exc
        except SkinspectorError as exc:
            raise CliError(str(exc)) from exc

    return wrapper  # type: ignore[return-value]


def get_settings(ctx: click.Context) -> Settings:
    """The process's settings, loaded once by the root command."""
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        settings = Settings()
        ctx.find_root().obj = settings
    return settings


def configure_logging(verbose: int, json_lines: bool = False) -> None:
    from skinspector.core.logs import configure

    configure(logging.WARNING - 10 * min(verbose, 2), json_lines)


PathArg = click.Path(path_type=Path)
ExistingFile = click.Path(exists=True, dir_okay=False, readable=True, path_type=Path)


def demo_builder() -> Callable[[Path], Path] | None:
    """The demo-bundle builder when the maintainer extras are installed, else None (a
    clinic box serves signed bundles only)."""
    from training.demo_bundle import demo_available, ensure_demo_bundle

    return ensure_demo_bundle if demo_available() else None
