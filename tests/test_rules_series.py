"""Series awareness, configuration of the engine, and `bot check` end to end."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

from bot.rules import Severity, Status
from tests.conftest import DATA
from tests.rules_support import rules_config, rules_ctx  # noqa: F401  (fixture)
from tests.test_rules import findings

SERIES = DATA / "rules" / "series" / "resolved-in-series.mbox"
LABELLED = DATA / "labelled"


def test_problem_fixed_later_in_the_series_is_resolved(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    [f] = [f for f in findings(SERIES, rules_ctx) if f.rule == "register-width"]
    assert (f.patch, f.status, f.line) == (1, Status.RESOLVED_IN_SERIES, 690)


def test_moved_code_is_pre_existing(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    width = [f for f in findings(LABELLED / "clean-split-debug-sr.mbox", rules_ctx)
             if f.rule == "register-width"]
    assert width and all(f.status is Status.PRE_EXISTING for f in width)


def _cfg(**rules):  # type: ignore[no-untyped-def]
    cfg = rules_config()
    return dataclasses.replace(cfg, rules=dataclasses.replace(cfg.rules, **rules))


def test_config_disables_overrides_and_restricts(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    patch = DATA / "rules" / "register-width-trigger.patch"
    assert not [f for f in findings(patch, rules_ctx, _cfg(disable=("register-width",)))]
    assert not [f for f in findings(patch, rules_ctx, _cfg(enable=("polarity",)))]
    [f] = findings(patch, rules_ctx, _cfg(severity={"register-width": "info"}))
    assert f.severity is Severity.INFO
    assert not findings(patch, rules_ctx, _cfg(paths={"register-width": ("arch/arm64/kvm/*",)}))
    assert findings(patch, rules_ctx, _cfg(paths={"register-width": ("*/kvm_host.h",)}))


def _bot(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "check", *args], capture_output=True,
                          text=True, check=False)


def test_cli_reports_a_real_known_problem() -> None:
    proc = _bot(str(LABELLED / "problem-width-genmask-hcr-imm.mbox"), "--format", "json",
                "--fail-on", "warning")
    assert proc.returncode == 1, proc.stderr
    [series] = json.loads(proc.stdout)["series"]
    [f] = [f for f in series["findings"] if f["rule"] == "register-width"]
    assert (f["category"], f["severity"], f["patch"], f["file"], f["line"], f["register"]) == (
        "register-width", "warning", 23, "arch/arm64/kvm/arm.c", 1867, "HCR_EL2")
    assert series["drafts"] and "17 bits" in series["drafts"][0]["body"]
    text = _bot(str(LABELLED / "problem-width-genmask-hcr-imm.mbox"))
    assert "\narch/arm64/kvm/arm.c:1867: warning: [23/24] GENMASK(16, 0) keeps 17 bits" \
        in text.stdout and "[register-width]\n" in text.stdout


def test_cli_is_quiet_on_a_real_clean_series() -> None:
    proc = _bot(str(LABELLED / "clean-trap-host-smcs-v4.mbox"), "--format", "json",
                "--fail-on", "warning")
    assert proc.returncode == 0, proc.stdout
    [series] = json.loads(proc.stdout)["series"]
    assert not [f for f in series["findings"] if f["severity"] in ("error", "warning")]


def test_cli_keeps_pre_existing_apart() -> None:
    proc = _bot(str(LABELLED / "clean-split-debug-sr.mbox"), "--format", "json")
    [series] = json.loads(proc.stdout)["series"]
    assert series["pre_existing"] and not series["findings"] and not series["drafts"]
    assert all(f["status"] == "pre-existing" for f in series["pre_existing"])


def test_rules_modules_stay_pure() -> None:
    code = ("import sys, bot.rules, bot.parse.csource, bot.kernel\n"
            "bad = [m for m in ('sqlalchemy', 'requests', 'b4', 'flask') if m in sys.modules]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

