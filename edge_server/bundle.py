"""Which model + index bundle the server runs: the configured one, the active one in the
data directory (with the previous one as a fallback), or the demo bundle (tiny random
model + starter knowledge base).

Installed bundles live in A/B slots under ``<data-dir>/bundles`` (see
:mod:`updates.slots`); ``active.json`` names the active slot and the previous
one. The server never checks update metadata or the clock here: an installed bundle is
trusted by its files, so a wrong clock or expired metadata cannot stop it from serving.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edge_server.settings import AnalysisSettings
from skinspector.core.bundle_manifest import BundleManifest
from skinspector.core.errors import ModelFileError, SkinspectorError
from skinspector.core.gguf import check_gguf
from skinspector.core.prompt import prompt_mismatches
from skinspector.core.settings import SamplingSettings
from updates.errors import SlotError
from updates.slots import POINTER_NAME, SlotStore

__all__ = [
    "DEMO_PENDING_VERSION",
    "DEMO_WARNING",
    "NO_BUNDLE_MESSAGE",
    "ActiveBundle",
    "DemoBuilder",
    "Fallback",
    "ServedBundle",
    "bundle_candidates",
    "demo_placeholder",
    "effective_analysis",
    "effective_sampling",
    "read_pointer",
    "resolve_bundle",
    "resolve_served",
]

log = logging.getLogger(__name__)

DEMO_WARNING = (
    "DEMO MODE: no model bundle is installed, so this box runs the built-in demo model. "
    "It has random weights: its output is random text and must not be used for patients."
)
ACTIVE_POINTER = POINTER_NAME


@dataclass(frozen=True, slots=True)
class ActiveBundle:
    root: Path
    manifest: BundleManifest
    slot: str | None = None  # its folder under <data-dir>/bundles, when installed there

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def demo(self) -> bool:
        return self.manifest.demo

    @property
    def intended_use(self) -> str | None:
        return self.manifest.intended_use

    @property
    def model(self) -> Path:
        return check_gguf(self.root / self.manifest.model, "language model")

    @property
    def mmproj(self) -> Path:
        return check_gguf(self.root / self.manifest.mmproj, "vision projector")

    @property
    def index(self) -> Path | None:
        return self.root / self.manifest.index if self.manifest.index else None

    @classmethod
    def open(cls, root: Path, slot: str | None = None) -> ActiveBundle:
        return cls(root, BundleManifest.read(root), slot)

    def check(self) -> ActiveBundle:
        """Cheap start-up checks: both GGUF headers and the index folder are there."""
        _ = self.model, self.mmproj
        if self.index is not None and not self.index.is_dir():
            raise ModelFileError(f"{self.root}: the index folder {self.manifest.index} is missing")
        return self

    def check_prompts(self, allow_mismatch: bool = False) -> None:
        """Refuse (or, with ``allow_mismatch``, log) a model trained on another version of a
        prompt this server sends: its answers would be to a prompt it never learned."""
        mismatches = prompt_mismatches(self.manifest.prompts or {})
        if not mismatches:
            return
        message = (
            f"bundle {self.version} was trained on other prompt versions: {'; '.join(mismatches)}"
        )
        if not allow_mismatch:
            raise ModelFileError(
                message + "; install a bundle trained for this server (or set "
                "server.allow_prompt_mismatch to load it anyway)"
            )
        log.warning("%s; loading anyway (server.allow_prompt_mismatch)", message)


@dataclass(frozen=True, slots=True)
class Fallback:
    """The server is not running the active bundle, and why."""

    failed: str  # the slot (or folder) that failed
    failed_version: str | None
    reason: str

    def as_json(self) -> dict[str, str | None]:
        return {"failed": self.failed, "failed_version": self.failed_version, "reason": self.reason}


@dataclass
class ServedBundle:
    """The bundle the server runs now. The app's mapping is frozen once it runs, so hot
    reload and fallback swap ``current`` inside this one object; the attributes routes
    read (``version``, ``demo``, ``manifest``...) always describe the current bundle."""

    current: ActiveBundle
    fallback: Fallback | None = None
    pointer: bytes | None = None  # the active.json content this was resolved from
    alternatives: list[ActiveBundle] = field(default_factory=list)  # to try if it fails
    watch: bool = False  # follow active.json (hot reload)
    # First run on a maintainer's machine: the demo bundle is still to be built (in the
    # background, after the server listens); ``current`` is a placeholder until then.
    pending_demo: DemoBuilder | None = None

    @property
    def root(self) -> Path:
        return self.current.root

    @property
    def manifest(self) -> BundleManifest:
        return self.current.manifest

    @property
    def version(self) -> str:
        return self.current.version

    @property
    def demo(self) -> bool:
        return self.current.demo

    @property
    def slot(self) -> str | None:
        return self.current.slot

    @property
    def intended_use(self) -> str | None:
        return self.current.intended_use

    @property
    def model(self) -> Path:
        return self.current.model

    @property
    def mmproj(self) -> Path:
        return self.current.mmproj

    @property
    def index(self) -> Path | None:
        return self.current.index

    def info(self) -> dict[str, object]:
        """What ``/api/v1/info`` says about the bundle."""
        body: dict[str, object] = {"bundle_slot": self.slot, "intended_use": self.intended_use}
        if self.fallback is not None:
            body["bundle_fallback"] = self.fallback.as_json()
        return body


def effective_sampling(bundle: ActiveBundle, configured: SamplingSettings) -> SamplingSettings:
    """The bundle's sampling defaults, overridden by every value set explicitly in the
    settings (flags, environment, TOML)."""
    if bundle.manifest.sampling is None:
        return configured
    explicit = {name: getattr(configured, name) for name in configured.model_fields_set}
    return bundle.manifest.sampling.model_copy(update=explicit)


def effective_analysis(bundle: ActiveBundle, configured: AnalysisSettings) -> AnalysisSettings:
    """The bundle's pass limits, overridden by every value set explicitly in the settings."""
    limits = bundle.manifest.limits
    if limits is None:
        return configured
    defaults = {k: v for k, v in limits.model_dump().items() if v is not None}
    defaults.update({name: getattr(configured, name) for name in configured.model_fields_set})
    return configured.model_copy(update=defaults)


def read_pointer(data_dir: Path) -> bytes | None:
    try:
        return (data_dir / "bundles" / ACTIVE_POINTER).read_bytes()
    except FileNotFoundError:
        return None


def bundle_candidates(data_dir: Path) -> tuple[list[tuple[str, Path]], bytes | None]:
    """(slot, folder) of the active bundle, then the previous one; and the pointer bytes."""
    bundles = data_dir / "bundles"
    pointer = read_pointer(data_dir)
    if pointer is None:
        return [], None
    try:
        state = SlotStore(bundles).state()
    except SlotError as exc:
        log.error("%s", exc)
        return [], pointer
    names = [n for n in (state.active, state.previous) if n is not None]
    return [(name, bundles / name) for name in dict.fromkeys(names)], pointer


#: Builds (once) the demo bundle into a cache folder and returns its path. The CLI passes
#: :func:`training.demo_bundle.ensure_demo_bundle` when the maintainer extras are installed;
#: a clinic box (the ``edge`` extra only) has none and must be given a signed bundle.
DemoBuilder = Callable[[Path], Path]

NO_BUNDLE_MESSAGE = (
    "no model bundle is installed. Install a signed bundle: run "
    "'skinspector update --init-root ROOT.json' once with the root file from your "
    "maintainers, then 'skinspector update --from DIR_OR_URL' (a USB stick folder or the "
    "review hub's /updates/ URL); or pass --bundle DIR to serve an unpacked bundle."
)


def resolve_served(
    data_dir: Path,
    bundle_dir: Path | None,
    cache_dir: Path,
    demo_builder: DemoBuilder | None = None,
    *,
    defer_demo: bool = False,
) -> ServedBundle:
    """``bundle_dir`` if given; else the active slot (falling back to the previous one if
    the active one cannot be opened); else the demo bundle when ``demo_builder`` is given;
    else :class:`~skinspector.core.errors.ModelFileError` saying how to install a bundle.

    With ``defer_demo`` the demo bundle is not built here (minutes on a first run): the
    result has a placeholder and ``pending_demo`` set, and the caller builds it later
    (the server does so in the background, while it already answers)."""
    if bundle_dir is not None:
        return ServedBundle(ActiveBundle.open(bundle_dir).check())
    candidates, pointer = bundle_candidates(data_dir)
    failures: list[Fallback] = []
    opened: list[ActiveBundle] = []
    for slot, folder in candidates:
        try:
            opened.append(ActiveBundle.open(folder, slot).check())
        except SkinspectorError as exc:
            failures.append(Fallback(slot, _version_of(folder), f"{type(exc).__name__}: {exc}"))
            log.error("bundle %s cannot be opened: %s", slot, exc)
    if opened:
        fallback = None
        if failures and failures[0].failed == candidates[0][0]:  # the active one failed
            fallback = failures[0]
            log.error(
                "FALLBACK: the active bundle (%s) failed to load; serving the previous bundle "
                "%s from %s",
                fallback.failed,
                opened[0].version,
                opened[0].slot,
            )
        return ServedBundle(opened[0], fallback, pointer, opened[1:], watch=True)
    if demo_builder is None:
        if failures:
            raise ModelFileError(
                f"no installed bundle can be opened ({failures[0].reason}); " + NO_BUNDLE_MESSAGE
            )
        raise ModelFileError(NO_BUNDLE_MESSAGE)
    if candidates:
        log.error("no installed bundle can be opened; serving the demo bundle")
    if defer_demo:
        served = ServedBundle(demo_placeholder(cache_dir), pointer=pointer, watch=True)
        served.pending_demo = demo_builder
    else:
        served = ServedBundle(ActiveBundle.open(demo_builder(cache_dir)), pointer=pointer)
        served.watch = True
    if failures:
        served.fallback = failures[0]
    return served


DEMO_PENDING_VERSION = "demo (preparing)"


def demo_placeholder(cache_dir: Path) -> ActiveBundle:
    """What ``ServedBundle.current`` holds while the demo bundle is being built."""
    manifest = BundleManifest(
        version=DEMO_PENDING_VERSION,
        model_id="skinspector-demo-tiny-random",
        model="pending.gguf",
        mmproj="pending.gguf",
        demo=True,
    )
    return ActiveBundle(cache_dir / "demo-bundles", manifest)


def resolve_bundle(
    data_dir: Path,
    bundle_dir: Path | None,
    cache_dir: Path,
    demo_builder: DemoBuilder | None = None,
) -> ActiveBundle:
    """The bundle :func:`resolve_served` would serve (without the bookkeeping)."""
    return resolve_served(data_dir, bundle_dir, cache_dir, demo_builder).current


def _version_of(folder: Path) -> str | None:
    try:
        return BundleManifest.read(folder).version
    except ModelFileError:
        return None
