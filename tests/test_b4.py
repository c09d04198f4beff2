"""The bot inside b4, driven by b4's own code (the b4 release the project
depends on): the bytes b4 hands a check command, b4's per-patch and
per-series check runners (`b4.review.checks`, what `b4 review` calls) and
its `b4 am` check runner, configured with the README's git-config lines,
in a git tree laid out as a kernel tree as far as checkpatch.pl looks.

For every transfer encoding a patch is sent with, the findings and their
lines b4's column shows must be those of the plain-text patch; a message the
bot could not check must be a failure saying why, never `[]`; and with b4's
tracking data, a patch is checked inside its series.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.b4_support import (
    as_sent,
    b4_messages,
    check_input,
    init_tree,
    mboxrd,
    track_series,
    write_tracking,
)

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
REAL = DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox"
CLEAN = DATA / "labelled" / "clean-remove-activate-vm.mbox"
ENCODINGS = DATA / "b4" / "encodings.patch"
SERIES = DATA / "rules" / "series" / "resolved-in-series.mbox"
BIN = Path(sys.executable).parent
DASHBOARD = "http://127.0.0.1:8050"

CASES = [
    (REAL, "as-sent"),               # real kvmarm mail, 7bit
    (REAL, "base64"),
    (ENCODINGS, "8bit"),
    (ENCODINGS, "quoted-printable"),
    (ENCODINGS, "base64"),
    (ENCODINGS, "multipart"),
]


def readme_b4_config() -> str:
    """The git-config lines the README's b4 section tells maintainers to add."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### In `b4 review`"):]
    block = re.search(r"^    \[b4\]\n(?:        \S.*\n)+", section, re.M)
    assert block is not None, "README: no [b4] block in the b4 section"
    return textwrap.dedent(block.group(0))


def plain_findings(path: Path, tmp_path: Path) -> set[tuple[str, str, int]]:
    """(rule, file, line) of the open findings on the plain-text patch."""
    proc = subprocess.run([sys.executable, "-m", "bot", "check", "--format", "json", str(path)],
                          capture_output=True, text=True, cwd=tmp_path, check=False,
                          env={"PATH": os.environ["PATH"], "HOME": str(tmp_path),
                               "BOT_CONFIG": str(DATA / "config" / "test.toml")})
    assert proc.returncode in (0, 1), proc.stderr
    [series] = json.loads(proc.stdout)["series"]
    return {(f["rule"], f["file"], f["line"]) for f in series["findings"]}


def shown(entry: dict[str, object], status: str | None = None) -> set[tuple[str, str, int]]:
    """(rule, file, line) of the details b4 shows for an entry (optionally
    only those with `status`)."""
    out = set()
    for d in json.loads(str(entry.get("details") or "[]")):
        m = re.match(r"(\S+):(\d+): ", d["description"])
        if m and (status is None or d["status"] == status):
            out.add((d["context"], m.group(1), int(m.group(2))))
    return out


def ours(results: list[dict[str, str]]) -> dict[str, str]:
    [entry] = [r for r in results if r["tool"] == "kvm-sysreg"]
    return entry


@pytest.fixture
def tree(tmp_path: Path, kernel_tree: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git tree with the kernel's top-level layout and its checkpatch.pl,
    the README's [b4] lines in .git/config, and b4 configured from it. The
    bot's configuration is only in $XDG_CONFIG_HOME (as a maintainer keeps
    it): b4 runs checks in the kernel tree, where no config.toml is."""
    repo = tmp_path / "linux"
    repo.mkdir()
    for name in ("COPYING", "CREDITS", "Kbuild", "MAINTAINERS", "README"):
        (repo / name).write_text("")
    for name in ("Documentation", "arch", "include", "drivers", "fs", "init", "ipc",
                 "kernel", "lib", "scripts"):
        (repo / name).mkdir()
        (repo / name / ".keep").write_text("")
    shutil.copy2(kernel_tree / "Makefile", repo / "Makefile")
    for name in ("checkpatch.pl", "spelling.txt", "const_structs.checkpatch"):
        shutil.copy2(kernel_tree / "scripts" / name, repo / "scripts" / name)
    init_tree(repo)
    with open(repo / ".git" / "config", "a") as fh:
        fh.write(readme_b4_config())
    xdg = tmp_path / "xdg"
    (xdg / "kvm-sysreg-bot").mkdir(parents=True)
    (xdg / "kvm-sysreg-bot" / "config.toml").write_text(
        (DATA / "config" / "test.toml").read_text()
        + '\n[web]\npublic_url = "%s"\n' % DASHBOARD)
    for var in list(os.environ):
        if var.startswith("BOT_") or var == "B4_TRACKING_FILE":
            monkeypatch.delenv(var)
    for var, sub in (("HOME", "home"), ("XDG_CACHE_HOME", "cache"), ("XDG_DATA_HOME", "data")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    monkeypatch.setenv("PATH", str(BIN) + os.pathsep + os.environ["PATH"])
    monkeypatch.chdir(repo)
    import b4
    b4._setup_main_config(topdir=str(repo))
    return repo


def test_readme_keeps_checkpatch_beside_the_bot(tree: Path) -> None:
    import b4.review.checks as checks
    perpatch, series = checks.load_check_cmds()
    assert perpatch == ["_builtin_checkpatch", "bot check --format b4 -"]
    assert series == ["bot check --format b4-series -"]


@pytest.mark.parametrize("path, encoding", CASES,
                         ids=["real-7bit", "real-base64", "8bit", "qp", "base64", "multipart"])
def test_every_encoding_gives_the_plain_patch_findings(tree: Path, tmp_path: Path, path: Path,
                                                       encoding: str) -> None:
    import b4.review.checks as checks
    expected = plain_findings(path, tmp_path)
    assert expected, "the fixture must have findings"
    [msg] = b4_messages(mboxrd(as_sent(path, encoding)))
    handed = check_input(msg)
    # The test exercises b4's form: original headers over a decoded body.
    if encoding in ("base64", "quoted-printable"):
        assert b"Content-Transfer-Encoding: %s" % encoding.encode() in handed
    if encoding == "multipart":
        assert b"multipart/mixed" in handed and b"--===" not in handed
    if encoding == "quoted-printable":  # a code line ending in "=": a soft break to a decoder
        assert re.search(rb"^\+\t.*=\n", handed, re.M)
    assert b"\ndiff --git a/" in handed
    perpatch, _ = checks.load_check_cmds()
    mid = msg["message-id"].strip("<> ")
    results = checks.run_perpatch_checks([(mid, msg)], perpatch, str(tree))[mid]
    entry = ours(results)
    assert shown(entry) == expected
    assert entry["status"] in ("fail", "warn")
    for detail in json.loads(entry["details"]):
        assert set(detail) >= {"status", "description", "srcline", "context", "url"}
        # The configuration was found from the kernel tree, through $XDG_CONFIG_HOME.
        assert detail["url"] == "%s/rules/%s" % (DASHBOARD, detail["context"])
        assert detail["srcline"].startswith("+")
    assert {r["tool"] for r in results} == {"kvm-sysreg", "checkpatch"}
    assert not (tree / "var").exists()  # no database, nothing written


def test_what_could_not_be_checked_fails_with_the_reason(tree: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import b4.review.checks as checks
    perpatch = ["bot check --format b4 -"]
    [msg] = b4_messages(mboxrd(as_sent(REAL, "as-sent")))
    mid = msg["message-id"].strip("<> ")
    monkeypatch.setenv("BOT_INPUT_MAX_MESSAGE_BYTES", "4000")
    entry = ours(checks.run_perpatch_checks([(mid, msg)], perpatch, str(tree))[mid])
    assert entry["status"] == "fail"
    assert re.match(r"could not be checked: message of \d+ bytes exceeds input.max_message_bytes",
                    entry["summary"])
    monkeypatch.delenv("BOT_INPUT_MAX_MESSAGE_BYTES")
    # A patch mail whose diff is gone (a mailer ate it): not "clean".
    text = as_sent(ENCODINGS, "8bit")
    [gutted] = b4_messages(mboxrd(text[:text.index(b"\ndiff --git")] + b"\n"))
    entry = ours(checks.run_perpatch_checks([("b4-encodings@example.org", gutted)], perpatch,
                                            str(tree))["b4-encodings@example.org"])
    assert (entry["status"], entry["summary"]) == ("fail", "could not be checked: no diff in the message")


def test_without_message_id_or_input(tmp_path: Path) -> None:
    """What b4 would never send, but another caller might."""
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "BOT_CONFIG": str(DATA / "config" / "test.toml")}
    text = re.sub(rb"(?im)^message-id:.*\n", b"", as_sent(ENCODINGS, "8bit"))
    for stdin, summary in ((text, "could not be checked: message has no Message-ID"),
                           (b"\n", None)):
        proc = subprocess.run([sys.executable, "-m", "bot", "check", "--format", "b4", "-"],
                              input=stdin, capture_output=True, env=env, cwd=tmp_path,
                              check=False)
        if summary is None:  # nothing at all on stdin: bad input, one line, exit 2
            assert proc.returncode == 2 and proc.stdout == b""
            assert proc.stderr.decode().strip() == "bot: error: -: empty input"
            continue
        assert proc.returncode == 0
        [entry] = json.loads(proc.stdout)
        assert (entry["status"], entry["summary"]) == ("fail", summary)


def test_series_with_a_resolved_problem(tree: Path, tmp_path: Path) -> None:
    """b4 review of a two-patch series whose patch 2 fixes what patch 1
    gets wrong (a u32 host copy of MDCR_EL2): alone, patch 1 warns; with
    b4's tracking data the bot sees the series and lists it as resolved."""
    import b4.review.checks as checks
    messages = b4_messages(SERIES.read_bytes())
    data = track_series(tree, messages)
    tracking = write_tracking(tmp_path / "b4-tracking.json", data)
    env = {"B4_TRACKING_FILE": str(tracking)}
    perpatch, series_cmds = checks.load_check_cmds()
    patches = sorted(((m["message-id"].strip("<> "), m) for m in messages),
                     key=lambda p: str(p[1]["subject"]))
    (p1, _), (p2, _) = patches
    finding = {("register-width", "arch/arm64/include/asm/kvm_host.h", 690)}

    alone = checks.run_perpatch_checks(patches, perpatch, str(tree))
    assert ours(alone[p1])["status"] == "warn"
    assert shown(ours(alone[p1]), "warn") == finding
    assert "checked alone" in ours(alone[p1])["summary"]

    with_series = checks.run_perpatch_checks(patches, perpatch, str(tree), extra_env=env)
    first = ours(with_series[p1])
    assert first["status"] == "pass"
    assert shown(first, "pass") == finding and shown(first, "warn") == set()
    base = data["series"]["base-commit"]
    assert first["summary"] == ("no HCR_EL2/MDCR_EL2 findings; 1 resolved in series; "
                                "checked with its series, base-commit %s; base none: findings on "
                                "the hunks, without the base (as of v5.11)" % base[:12])
    assert ours(with_series[p2])["status"] == "pass"
    assert {r["tool"] for r in with_series[p1]} == {"kvm-sysreg", "checkpatch"}

    [summary] = [r for r in checks.run_series_checks(patches[0], series_cmds, str(tree),
                                                      extra_env=env) if r["tool"] == "kvm-sysreg"]
    assert summary["status"] == "pass"
    assert summary["summary"].startswith("2 patches: no HCR_EL2/MDCR_EL2 findings; "
                                         "1 resolved in series; checked with its series")


def test_checkpatch_format_in_b4_am(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`b4 am`'s local checks, configured as the README says: the bot's line
    is a failure where checkpatch would print ERROR, and a clean patch
    passes (no output at all). Only the rule this is about runs: the format
    is under test, not the rules."""
    import b4
    monkeypatch.setenv("BOT_RULES_ENABLE", "reserved-bit")
    cmds = b4.get_main_config()["am-perpatch-check-cmd"]
    assert cmds == ["./scripts/checkpatch.pl -q --terse --no-summary --mailback",
                    "bot check --format checkpatch -"]
    argv = cmds[1].split()
    [msg] = b4_messages(mboxrd(as_sent(ENCODINGS, "base64")))
    report = b4.LoreMessage.run_local_check(argv, "encodings", msg, nocache=True)
    assert report == [("fail", "bot: arch/arm64/kvm/hyp/nvhe/switch.c:63: ERROR: the value "
                       "written to MDCR_EL2 sets bit 52 of MDCR_EL2, which the architecture "
                       "reserves (RES0): software must write them as zero. [reserved-bit]")]
    [clean] = b4_messages(mboxrd(as_sent(CLEAN, "as-sent")))
    assert b4.LoreMessage.run_local_check(argv, "clean", clean, nocache=True) == [
        ("success", "bot: passed all checks")]
    checkpatch = b4.LoreMessage.run_local_check(cmds[0].split(), "encodings", msg, nocache=True)
    assert checkpatch and all(text.startswith("checkpatch.pl: ") for _, text in checkpatch)
