"""The shipped systemd units (contrib/systemd/) pass `systemd-analyze verify`
with no diagnostic, and say what the README promises: a Type=notify daemon
with a watchdog and hardening, and a timer running `bot poll`."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "contrib" / "systemd"
INSTALLED = "/srv/kvm-sysreg-review-bot"


def _verify(directory: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed; run .ci/system-deps")
    return subprocess.run(["systemd-analyze", "verify", "--man=no",
                           *sorted(str(p) for p in directory.iterdir())],
                          capture_output=True, text=True, cwd=directory)


def _installed_here(tmp_path: Path) -> Path:
    """The units as installed on this machine: verify checks that the
    commands they run exist, so they point at this checkout's bot."""
    out = tmp_path / "units"
    out.mkdir()
    bot = Path(sys.executable).parent / "bot"
    assert bot.exists()
    for unit in UNITS.iterdir():
        text = unit.read_text().replace(INSTALLED + "/.venv/bin/bot", str(bot))
        (out / unit.name).write_text(text.replace(INSTALLED, str(ROOT)))
    return out


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / name)
    return parser


def test_units_pass_systemd_analyze_verify(tmp_path):
    units = _installed_here(tmp_path)
    assert {p.name for p in units.iterdir()} == {
        "kvm-sysreg-review-bot.service", "kvm-sysreg-review-bot-poll.service",
        "kvm-sysreg-review-bot-poll.timer", "kvm-sysreg-review-bot-web.service"}
    proc = _verify(units)
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout == "", proc.stderr


def test_verify_reports_a_broken_unit(tmp_path):
    # verify exits 0 on a bad setting and only prints it: the test above
    # fails on any output, and this shows output comes.
    units = _installed_here(tmp_path)
    service = units / "kvm-sysreg-review-bot.service"
    service.write_text(service.read_text().replace("ProtectSystem=strict",
                                                   "ProtectSystm=strict"))
    assert "Unknown key 'ProtectSystm'" in _verify(units).stderr


def test_the_daemon_unit_is_notify_watchdog_and_hardened():
    service = _unit("kvm-sysreg-review-bot.service")["Service"]
    assert service["Type"] == "notify" and service["WatchdogSec"]
    assert service["ExecStart"].endswith("/bot daemon")
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("PrivateTmp", "yes")):
        assert service[key] == value
    # state_dir is the StateDirectory, the one writable place under strict.
    state = service["StateDirectory"]
    assert "BOT_STATE_DIR=/var/lib/%s" % state in service["Environment"]


def test_the_timer_runs_bot_poll():
    timer = _unit("kvm-sysreg-review-bot-poll.timer")["Timer"]
    assert timer["OnCalendar"]
    poll = _unit("kvm-sysreg-review-bot-poll.service")
    assert poll["Service"]["Type"] == "oneshot"
    assert poll["Service"]["ExecStart"].endswith("/bot poll")
    assert poll["Unit"]["Conflicts"] == "kvm-sysreg-review-bot.service"


def test_the_dashboard_unit_serves_with_its_key_from_a_file():
    service = _unit("kvm-sysreg-review-bot-web.service")["Service"]
    assert service["ExecStart"].endswith("/bot serve")
    assert service["EnvironmentFile"].endswith("web.env")
    assert "BOT_WEB_SECRET_KEY" not in service.get("Environment", "")
    assert service["NoNewPrivileges"] == "yes" and service["ProtectSystem"] == "strict"

