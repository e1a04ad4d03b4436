from __future__ import annotations

from pathlib import Path

import pytest

from skinspector.core.settings import Settings


def test_defaults_are_the_reports() -> None:
    sampling = Settings().engine.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.repeat_penalty) == (
        0.7,
        0.95,
        25,
        1.0,
    )
    assert Settings().engine.n_ctx == 8192
    assert Settings().image.min_pixels == 256 * 28 * 28
    assert Settings().image.max_pixels == 512 * 28 * 28


def test_environment_overrides_nested(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SKINSPECTOR_ENGINE__SAMPLING__TEMPERATURE", "0.2")
    monkeypatch.setenv("SKINSPECTOR_CACHE_DIR", str(tmp_path))
    settings = Settings()
    assert settings.engine.sampling.temperature == 0.2
    assert settings.cache_dir == tmp_path


def test_out_of_bounds_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SKINSPECTOR_ENGINE__SAMPLING__TOP_P", "1.5")
    with pytest.raises(ValueError, match="top_p"):
        Settings()
