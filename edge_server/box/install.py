"""``skinspector box install``: service user, private data directory, hardened systemd unit.

Everything is written under ``root`` (``/`` on a real box, a staging folder in tests and
``--dry-run``), so the same code is tested without touching ``/etc``. Creating the user
and calling ``systemctl`` are the only steps that need the real system; they run only when
``root`` is ``/`` and are skipped (and reported) otherwise.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from skinspector.core.storage import make_private_dir, write_atomic

__all__ = [
    "SERVICE_USER",
    "UNIT_NAME",
    "InstallPlan",
    "InstallReport",
    "install",
    "render_unit",
    "uninstall",
]

SERVICE_USER = "skinspector"
UNIT_NAME = "skinspector.service"
UNIT_DIR = Path("etc/systemd/system")
#: The data folders ``serve`` and the sync agent use (``edge_server.store``,
#: ``edge_server.sync_wiring``, ``updates.slots``), created 0700 up front.
DATA_SUBDIRS = ("photos", "bundles", "sync", "backup")


@dataclass(frozen=True, slots=True)
class InstallPlan:
    executable: Path  # the ``skinspector`` entry point of the box's virtualenv
    data_dir: Path = Path("/var/lib/skinspector")
    config: Path | None = None
    user: str = SERVICE_USER
    watchdog_seconds: int = 60
    port: int | None = None


def render_unit(plan: InstallPlan) -> str:
    """The systemd service for ``skinspector serve`` (which runs its sync agent too)."""
    command = [str(plan.executable), "--log-json", "serve", "--data-dir", str(plan.data_dir)]
    if plan.config is not None:
        command += ["--config", str(plan.config)]
    if plan.port is not None:
        command += ["--port", str(plan.port)]
    data = str(plan.data_dir)
    return f"""\
# Written by `skinspector box install`; `skinspector box uninstall` removes it.
[Unit]
Description=SKINspectoR edge clinic server (and its sync agent)
Documentation=https://github.com/skinspector/skinspector-edge#installing-a-clinic-box
Wants=network-online.target
After=network-online.target
StartLimitIntervalSec=600
StartLimitBurst=20

[Service]
Type=notify
NotifyAccess=main
WatchdogSec={plan.watchdog_seconds}
ExecStart={shlex.join(command)}
Restart=on-failure
RestartSec=5
TimeoutStartSec=600
TimeoutStopSec=60
User={plan.user}
Group={plan.user}
WorkingDirectory={data}
Environment=HOME={data}
Environment=PYTHONUNBUFFERED=1
UMask=0077

# Hardening: the data directory is the only writable place.
ProtectSystem=strict
ReadWritePaths={data}
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
NoNewPrivileges=yes
CapabilityBoundingSet=
AmbientCapabilities=
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=no
SystemCallArchitectures=native
# mDNS needs AF_NETLINK (interface list) and AF_INET/AF_INET6 (multicast).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK

[Install]
WantedBy=multi-user.target
"""


@dataclass
class InstallReport:
    root: Path
    unit_path: Path
    data_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # system steps not run (staging root)


def _under(root: Path, path: Path) -> Path:
    return root / path.relative_to(path.anchor) if path.is_absolute() else root / path


def _is_live(root: Path) -> bool:
    return root.resolve() == Path("/")


def _create_user(user: str, home: Path) -> None:
    import pwd

    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    subprocess.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--home-dir",
            str(home),
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ],
        check=True,
    )


def _chown_tree(path: Path, user: str) -> None:
    for folder, _dirs, files in os.walk(path):
        shutil.chown(folder, user, user)
        for name in files:
            shutil.chown(os.path.join(folder, name), user, user)


def install(plan: InstallPlan, root: Path = Path("/"), *, enable: bool = True) -> InstallReport:
    """Write the unit and the 0700 data directory under ``root``; on the live system also
    create the service user, chown the data directory and enable + start the service."""
    live = _is_live(root)
    unit_path = _under(root, UNIT_DIR / UNIT_NAME)
    data_dir = _under(root, plan.data_dir)
    report = InstallReport(root, unit_path, data_dir)
    if live:
        _create_user(plan.user, plan.data_dir)
    else:
        report.skipped.append(f"create system user {plan.user!r} (no login shell)")
    make_private_dir(data_dir)
    for name in DATA_SUBDIRS:
        make_private_dir(data_dir / name)
    unit_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(unit_path, render_unit(plan).encode(), mode=0o644)
    report.written += [unit_path, data_dir]
    systemctl = [["systemctl", "daemon-reload"]]
    if enable:
        systemctl.append(["systemctl", "enable", "--now", UNIT_NAME])
    if live:
        _chown_tree(data_dir, plan.user)
        for command in systemctl:
            subprocess.run(command, check=True)
    else:
        report.skipped.append(f"chown -R {plan.user}: {plan.data_dir}")
        report.skipped += [shlex.join(c) for c in systemctl]
    return report


def uninstall(root: Path = Path("/")) -> InstallReport:
    """Stop and remove the unit; the data directory (cases, keys, bundles) stays."""
    live = _is_live(root)
    unit_path = _under(root, UNIT_DIR / UNIT_NAME)
    report = InstallReport(root, unit_path, Path())
    commands = [["systemctl", "disable", "--now", UNIT_NAME]]
    if live and unit_path.exists():
        subprocess.run(commands[0], check=False)
    elif not live:
        report.skipped.append(shlex.join(commands[0]))
    unit_path.unlink(missing_ok=True)
    if live:
        subprocess.run(["systemctl", "daemon-reload"], check=False)
    return report
