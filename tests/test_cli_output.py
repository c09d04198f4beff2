"""The command line as kernel people use it: text output in the gcc and
checkpatch style, -v/-q, progress on a terminal, baselines of known
findings, `bot rules`, `bot config show`, and --help of every command."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot import config as botconfig
from bot.rules import REGISTRY

DATA = Path(__file__).parent / "data"
WIDTH = DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox"     # real: a warning
POLARITY = DATA / "labelled" / "problem-polarity-drop-fb.mbox"       # real: a question
SERIES = DATA / "rules" / "series" / "resolved-in-series.mbox"
CLEAN = DATA / "labelled" / "clean-remove-activate-vm.mbox"
# What a series header says without a kernel repository (bot.data.Base.summary).
NO_BASE = "base none: findings on the hunks, without the base (as of v5.11)"
TRIGGER = DATA / "rules" / "reserved-bit-trigger.patch"

WIDTH_LINE = ("arch/arm64/kvm/arm.c:1867: warning: [23/24] GENMASK(16, 0) keeps 17 bits of the "
              "HCR_EL2 value, but imm is a u16: the top 1 bit(s) are lost. [register-width]")
POLARITY_LINE = ("arch/arm64/include/asm/kvm_arm.h:78: question: dropping FB from "
                 "HCR_GUEST_FLAGS changes what every guest runs with: what makes that safe "
                 "for all of them? [polarity]")


# The rules whose findings these tests read: the output is under test here,
# not the rules, which grow (tests/test_rules*.py follow them).
RULES = "register-width,polarity,reserved-bit"


def bot(tmp_path: Path, *args: str | Path, stdin: bytes | None = None,
        env_extra: dict[str, str] | None = None, stderr: int | None = subprocess.PIPE,
        rules: str | None = RULES) -> subprocess.CompletedProcess[bytes]:
    env = {"BOT_STATE_DIR": str(tmp_path / "state"), "PATH": os.environ["PATH"],
           "HOME": str(tmp_path), "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    if rules is not None:
        env["BOT_RULES_ENABLE"] = rules
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "bot", *map(str, args)], input=stdin,
                          stdout=subprocess.PIPE, stderr=stderr, env=env, cwd=tmp_path,
                          check=False)


def lines(proc: subprocess.CompletedProcess[bytes]) -> list[str]:
    return proc.stdout.decode().splitlines()


def test_text_is_one_line_per_finding_under_a_series_header(tmp_path: Path) -> None:
    proc = bot(tmp_path, "check", WIDTH, POLARITY, SERIES, CLEAN)
    assert proc.returncode == 0, proc.stderr  # --fail-on error: a warning does not fail
    assert lines(proc) == [
        "== [v1] kvm: arm64: Trap host SMCs in protected mode. "
        "<20201109113233.9012-24-dbrazdil@google.com>: 1 of 24 patches (missing 1-22, 24), "
        + NO_BASE,
        WIDTH_LINE,
        "== [v1] KVM: arm64: Don't force broadcast tlbi when guest is running "
        "<1603331829-33879-1-git-send-email-zhangshaokun@hisilicon.com>: 1 patch, " + NO_BASE,
        POLARITY_LINE,
        "kvm-sysreg: 4 series checked: 1 warning, 1 question in 2 series; "
        "1 resolved in series, 2 incomplete, 4 without the base (findings on the hunks) "
        "(-v shows them)",
    ]
    assert proc.stderr == b""
    assert bot(tmp_path, "check", "--fail-on", "warning", WIDTH).returncode == 1
    assert bot(tmp_path, "check", "--fail-on", "warning", POLARITY).returncode == 0


def test_quiet_and_verbose_before_or_after_the_command(tmp_path: Path) -> None:
    for args in (("-q", "check"), ("check", "-q")):
        assert lines(bot(tmp_path, *args, WIDTH, SERIES, CLEAN)) == [WIDTH_LINE]
    out = lines(bot(tmp_path, "check", "-v", SERIES, CLEAN))
    assert out[0] == ("== [v1] KVM: arm64: Keep the host MDCR_EL2 in the vcpu "
                      "<series-resolved-1@example.org>: 2 patches, %s, no findings" % NO_BASE)
    assert out[1] == ("arch/arm64/include/asm/kvm_host.h:690: note: [1/2] mdcr_el2_host holds "
                      "MDCR_EL2 in a u32, but MDCR_EL2 is a 64-bit register: use u64. "
                      "[register-width] (resolved-in-series)")
    assert out[2].startswith("== [v4] KVM: arm64: Remove __activate_vm wrapper")
    assert out[-1] == "kvm-sysreg: 2 series checked: no findings; 1 resolved in series, " \
                      "1 incomplete, 2 without the base (findings on the hunks)"


def test_control_characters_from_mail_never_reach_the_terminal(tmp_path: Path) -> None:
    """A subject carrying a C1 CSI (clear screen) and a right-to-left
    override, RFC 2047 encoded so they survive the header parser, and an
    escape sequence in the patched code a finding quotes."""
    text = TRIGGER.read_text()
    text = text.replace("Subject: [PATCH] KVM: arm64:",
                        "Subject: [PATCH] =?utf-8?b?wpsySuKArg==?= KVM: arm64:")
    text = text.replace("+\twrite_sysreg(MDCR_EL2_TPMS | BIT_ULL(52), mdcr_el2);",
                        "+\twrite_sysreg(MDCR_EL2_TPMS | BIT_ULL(52), mdcr_el2); /* \x1b]0;x\x07 */")
    path = tmp_path / "hostile.patch"
    path.write_text(text)
    for fmt in ("text", "checkpatch"):
        out = bot(tmp_path, "check", "-v", "--format", fmt, path).stdout.decode()
        assert "reserved-bit" in out
        assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e]", out), repr(out)
    [entry] = json.loads(bot(tmp_path, "check", "--format", "b4", "-",
                             stdin=path.read_bytes()).stdout)
    for detail in json.loads(entry["details"]):
        for value in detail.values():
            assert not re.search("[\x00-\x1f\x7f-\x9f\u202a-\u202e]", str(value)), value


def _many_patches(tmp_path: Path, n: int) -> Path:
    """n distinct one-patch threads (the reserved-bit trigger, renamed)."""
    text = TRIGGER.read_text().split("\n", 1)[1]
    path = tmp_path / "many.mbox"
    path.write_text("".join("From mboxrd@z Thu Jan  1 00:00:00 1970\n%s\n" % text.replace(
        "<rules-reserved-bit-trigger@example.org>", "<many-%d@example.org>" % i)
                            for i in range(n)))
    return path


def test_progress_on_a_terminal_only(tmp_path: Path) -> None:
    path = _many_patches(tmp_path, 1500)  # a few seconds: long enough to show progress
    master, slave = pty.openpty()
    try:
        proc = bot(tmp_path, "check", path, stderr=slave)
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the terminal's other end closed: all read
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(master)
    assert proc.returncode == 1
    assert sum(ln.endswith("[reserved-bit]") for ln in lines(proc)) == 1500
    shown = seen.decode()
    assert re.search(r"\r\x1b\[Kchecked \d+ of 1500 messages, \d+ series, \d+ msg/s", shown), \
        repr(shown)
    assert shown.endswith("\r\x1b[K")  # the line is erased when done
    # Not a terminal: nothing at all on stderr.
    assert bot(tmp_path, "check", path).stderr == b""


def test_baseline_reports_only_new_findings(tmp_path: Path) -> None:
    known = tmp_path / "known.txt"
    proc = bot(tmp_path, "check", "--write-baseline", known, WIDTH)
    assert proc.returncode == 0, proc.stderr
    text = known.read_text()
    [entry] = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    fingerprint, reason = entry.split(None, 1)
    assert re.fullmatch(r"[0-9a-f]{16,64}", fingerprint)
    assert reason.startswith("known when the baseline was written")
    assert ("# register-width warning arch/arm64/kvm/arm.c:1867 "
            "<20201109113233.9012-24-dbrazdil@google.com>") in text

    # The known warning is not reported and does not fail the run; a new finding does.
    proc = bot(tmp_path, "check", "--fail-on", "warning", "--baseline", known, WIDTH)
    assert proc.returncode == 0
    assert lines(proc) == ["kvm-sysreg: 1 series checked: no findings; 1 known (baseline), "
                           "1 incomplete, 1 without the base (findings on the hunks) "
                           "(-v shows them)"]
    proc = bot(tmp_path, "check", "--fail-on", "question", "--baseline", known, WIDTH, POLARITY)
    assert proc.returncode == 1
    assert [ln for ln in lines(proc) if not ln.startswith(("==", "kvm-sysreg:"))] == \
        [POLARITY_LINE]
    verbose = lines(bot(tmp_path, "check", "-v", "--baseline", known, WIDTH))
    assert any(ln.endswith("(known: %s)" % reason) for ln in verbose)

    # JSON: known findings move to "baselined", with the reason.
    known.write_text(text.replace(reason, "the caller masks bit 16 off (on the list)"))
    doc = json.loads(bot(tmp_path, "check", "--format", "json", "--baseline", known,
                         WIDTH).stdout)
    [series] = doc["series"]
    assert series["findings"] == []
    [baselined] = series["baselined"]
    assert (baselined["rule"], baselined["line"], baselined["reason"]) == (
        "register-width", 1867, "the caller masks bit 16 off (on the list)")

    # Rewriting keeps the reason given and adds the new finding.
    assert bot(tmp_path, "check", "--write-baseline", known, WIDTH, POLARITY).returncode == 0
    entries = [ln for ln in known.read_text().splitlines() if ln and not ln.startswith("#")]
    assert len(entries) == 2
    assert "%s  the caller masks bit 16 off (on the list)" % fingerprint in entries


def test_a_bad_baseline_is_one_line_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("# known findings\nnot-a-fingerprint because\n")
    proc = bot(tmp_path, "check", "--baseline", bad, WIDTH)
    assert proc.returncode == 2
    assert proc.stderr.decode() == ("bot: error: %s:2: expected a finding fingerprint (hex) "
                                    "and a reason\n" % bad)
    bad.write_text("0123456789abcdef0123\n")
    proc = bot(tmp_path, "check", "--baseline", bad, WIDTH)
    assert proc.stderr.decode() == ("bot: error: %s:1: the entry for 0123456789abcdef0123 "
                                    "gives no reason\n" % bad)
    proc = bot(tmp_path, "check", "--baseline", tmp_path / "missing.txt", WIDTH)
    assert proc.returncode == 2 and b"no such baseline file" in proc.stderr


def test_rules_lists_the_registry_with_the_configured_state(tmp_path: Path) -> None:
    cfg = tmp_path / "rules.toml"
    cfg.write_text('[rules]\ndisable = ["vhe-nvhe"]\nseverity = { barrier = "error" }\n')
    proc = bot(tmp_path, "--config", cfg, "rules", rules=None)
    assert proc.returncode == 0
    out = lines(proc)
    assert out[0].split() == ["ID", "CATEGORY", "SEVERITY", "ENABLED", "SUMMARY"]
    rows = {ln.split()[0]: ln for ln in out[1:]}
    assert set(rows) == {spec.id for spec in REGISTRY}
    for spec in REGISTRY:
        assert spec.summary in rows[spec.id] and str(spec.category) in rows[spec.id]
    assert re.search(r"^vhe-nvhe\s+vhe-nvhe\s+question\s+no\s", rows["vhe-nvhe"])
    assert re.search(r"^barrier\s+barrier\s+error \(default warning\)\s+yes\s", rows["barrier"])
    doc = json.loads(bot(tmp_path, "--config", cfg, "rules", "--json", rules=None).stdout)
    assert {r["id"]: r["enabled"] for r in doc}["vhe-nvhe"] is False

    show = bot(tmp_path, "rules", "show", "reserved-bit")
    assert show.returncode == 0
    text = show.stdout.decode()
    spec = REGISTRY.get("reserved-bit")
    assert spec is not None
    assert text.startswith("reserved-bit: %s\n" % spec.summary)
    assert " ".join(spec.doc.split()[:8]) in " ".join(text.split())
    proc = bot(tmp_path, "rules", "show", "no-such-rule")
    assert proc.returncode == 2
    assert proc.stderr.decode() == "bot: error: no-such-rule: no such rule (`bot rules` " \
                                   "lists them)\n"


def test_config_show_prints_values_and_their_origins(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "kvm-sysreg-bot").mkdir(parents=True)
    user = xdg / "kvm-sysreg-bot" / "config.toml"
    user.write_text('[lore]\nretries = 7\n[rules]\ndisable = ["barrier"]\n')
    env = {"XDG_CONFIG_HOME": str(xdg), "BOT_CONFIG": "", "BOT_LORE_URL": "http://127.0.0.1:1/all"}
    proc = bot(tmp_path, "config", "show", env_extra=env, rules=None)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout.decode()
    assert text.splitlines()[0] == "# configuration file: %s (found by $XDG_CONFIG_HOME)" % user
    origin, section = {}, ""
    for line in text.splitlines():
        if line.startswith("["):
            section = line.strip("[]") + "."
        m = re.match(r"^(?:# )?(\w+) .*?  # (.*)$", line)
        if m:
            origin[section + m.group(1)] = m.group(2)
    assert origin["lore.retries"] == str(user)
    assert origin["rules.disable"] == str(user)
    assert origin["lore.url"] == "$BOT_LORE_URL"
    assert origin["daemon.interval"] == "default"
    assert origin["smtp.password"] == "default"  # no secret configured: not set at all
    # What it prints is TOML that loads back to the same configuration.
    again = tmp_path / "again.toml"
    again.write_text(text)
    shown = botconfig.load(again, environ={})
    loaded = botconfig.load(user, environ={"BOT_LORE_URL": "http://127.0.0.1:1/all",
                                           "BOT_STATE_DIR": str(tmp_path / "state")})
    for f in dataclasses.fields(loaded):
        if f.name not in botconfig.META_FIELDS:
            assert getattr(shown, f.name) == getattr(loaded, f.name), f.name
    assert tomllib.loads(text)["lore"]["retries"] == 7


COMMANDS = [("check",), ("poll",), ("daemon",), ("db",), ("regmodel",), ("rules",),
            ("config",)]


@pytest.mark.parametrize("command", COMMANDS, ids=[c[0] for c in COMMANDS])
def test_every_command_has_a_description_and_examples(tmp_path: Path,
                                                      command: tuple[str, ...]) -> None:
    proc = bot(tmp_path, *command, "--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    usage, description = text.split("\n\n")[:2]
    assert usage.startswith("usage: bot %s" % command[0])
    assert len(description.split()) >= 8, description
    examples = text.split("\nexamples:\n", 1)[1]
    assert re.search(r"^  (\S+=\S+ )?bot %s\b" % command[0], examples, re.M), examples
