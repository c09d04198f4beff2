"""Finding identity across revisions (bot.revisions, Finding.fingerprint).

The findings come from the real rules run over the real patch of
tests/data/labelled/problem-width-genmask-hcr-imm.mbox (GENMASK(16, 0) into
a u16) and the RFC of tests/data/rules/host-flags-trigger.mbox (HCR_TSC in
the nVHE host flags only), each moved the way a later revision moves code:
lines shifted, hunks reordered, the patch renumbered and reordered in its
series, the surrounding code reworded. What must not match: another field,
another function.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from bot import config as botconfig
from bot.data import (
    Category,
    EarlierFinding,
    EarlierRevision,
    EarlierSource,
    Finding,
    RevisionStatus,
    RuleResult,
    Severity,
    Status,
)
from bot.pipeline import Checker
from bot.revisions import choose, compare, drafted, match
from bot.sources import InputSet

DATA = Path(__file__).parent / "data"
GENMASK = (DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox").read_text()
HOST_FLAGS = (DATA / "rules" / "host-flags-trigger.mbox").read_text()
GENMASK_LINE = "+\tu16 imm = (hcr >> shift) & GENMASK(16, 0);\n"


@pytest.fixture(scope="module")
def checker() -> Checker:
    return Checker(botconfig.Config())


def findings(checker: Checker, tmp_path: Path, text: str, rule: str) -> list[Finding]:
    path = tmp_path / ("%d.mbox" % len(list(tmp_path.iterdir())))
    path.write_text(text)
    out = []
    for raws in InputSet([str(path)], botconfig.Config().input).threads():
        for res in checker.check_thread(raws).results:
            out += [f for f in res.rules.findings if f.rule == rule]
    return out


def one(checker: Checker, tmp_path: Path, text: str, rule: str = "register-width") -> Finding:
    (found,) = findings(checker, tmp_path, text, rule)
    return found


def edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new)


def reorder_files(text: str) -> str:
    """The patch's file diffs in reverse order (every hunk moves)."""
    head, _sep, rest = text.partition("\ndiff --git ")
    tail_at = rest.index("\n-- \n")
    blocks = ("diff --git " + rest[:tail_at + 1]).split("\ndiff --git ")
    blocks = [b if b.startswith("diff --git ") else "diff --git " + b for b in blocks]
    blocks = [b.rstrip("\n") + "\n" for b in blocks]
    return head + "\n" + "".join(reversed(blocks)) + rest[tail_at + 1:]


def test_the_evidence_is_what_a_reviewer_would_quote(checker, tmp_path):
    f = one(checker, tmp_path, GENMASK)
    assert (f.patch, f.file, f.line, f.function) == (23, "arch/arm64/kvm/arm.c", 1867,
                                                     "__gen_mov_hcr_insn")
    assert f.evidence == ("\tu16 imm = (hcr >> shift) & GENMASK(16, 0);",)


def test_a_line_move_keeps_the_fingerprint(checker, tmp_path):
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, edit(GENMASK, "@@ -1861,6 +1861,41 @@",
                                     "@@ -1907,6 +1907,41 @@"))
    assert v2.line == v1.line + 46
    assert v2.fingerprint == v1.fingerprint
    assert match([v2], [v1]) == {0: 0}


def test_hunk_reordering_keeps_the_fingerprint(checker, tmp_path):
    moved = reorder_files(GENMASK)
    assert moved.index("a/arch/arm64/kvm/hyp/nvhe/switch.c") < moved.index("a/arch/arm64/kvm/arm.c")
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, moved)
    assert v2.fingerprint == v1.fingerprint


def test_patch_reordering_and_renumbering_keep_the_fingerprint(checker, tmp_path):
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, edit(GENMASK, "[PATCH v1 23/24]", "[PATCH v2 3/5]"))
    assert (v1.patch, v2.patch) == (23, 3)
    assert v2.fingerprint == v1.fingerprint
    assert v2.key != v1.key  # within one series, the patch still tells them apart


def test_reworded_surrounding_code_keeps_the_fingerprint(checker, tmp_path):
    text = edit(GENMASK, "+\tint shift = 48 - (i * 16);\n",
                "+\t/* One halfword of the flags per instruction. */\n"
                "+\tunsigned int shift = 48 - 16 * i;\n")
    text = edit(text, "@@ -1861,6 +1861,41 @@", "@@ -1861,6 +1861,42 @@")
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, text)
    assert v2.line == v1.line + 1
    assert v2.fingerprint == v1.fingerprint


def test_respaced_or_commented_evidence_keeps_the_fingerprint(checker, tmp_path):
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, edit(GENMASK, GENMASK_LINE,
                                     "+\tu16 imm = (hcr>>shift) & GENMASK(16,0); /* 16 bits */\n"))
    assert v2.evidence != v1.evidence
    assert v2.fingerprint == v1.fingerprint


@pytest.mark.parametrize("reworded", [
    "+\tu16 imm = (hcr >> sh) & GENMASK(16, 0);\n",
    "+\tconst u16 imm = (hcr >> shift) & GENMASK(16, 0);\n",
    "+\tu16 imm = (hcr >> (48 - 16 * i)) & GENMASK(16, 0);\n",
])
def test_a_reworded_evidence_line_matches_by_similarity(checker, tmp_path, reworded):
    v1 = one(checker, tmp_path, GENMASK)
    v2 = one(checker, tmp_path, edit(GENMASK, GENMASK_LINE, reworded))
    assert v2.fingerprint != v1.fingerprint
    assert match([v2], [v1]) == {0: 0}


def test_a_different_function_does_not_match(checker, tmp_path):
    v1 = one(checker, tmp_path, GENMASK)
    renamed = findings(checker, tmp_path, GENMASK.replace("__gen_mov_hcr_insn",
                                                          "__gen_movk_insn"), "register-width")
    (v2,) = [f for f in renamed if f.evidence == v1.evidence]
    assert v2.function == "__gen_movk_insn"
    assert v2.fingerprint != v1.fingerprint
    assert match([v2], [v1]) == {}


def test_a_different_field_does_not_match(checker, tmp_path):
    v1 = one(checker, tmp_path, HOST_FLAGS, "host-flags")
    v2 = one(checker, tmp_path, edit(HOST_FLAGS, "(HCR_HOST_NVHE_STUB_FLAGS | HCR_TSC)",
                                     "(HCR_HOST_NVHE_STUB_FLAGS | HCR_TID3)"), "host-flags")
    assert (v1.fields, v2.fields) == (("TSC",), ("TID3",))
    assert v2.function == v1.function
    assert match([v2], [v1], similarity=0.0) == {}


def _finding(**kw: object) -> Finding:
    base: dict[str, object] = dict(
        rule="register-width", category=Category.REGISTER_WIDTH, severity=Severity.WARNING,
        patch=1, file="arch/arm64/kvm/hyp/vhe/switch.c", line=10, register="HCR_EL2",
        fields=(), message="m", evidence=("\tu32 hcr = read_sysreg(hcr_el2);",),
        function="__activate_traps")
    base.update(kw)
    return Finding(**base)  # type: ignore[arg-type]


def test_each_earlier_finding_is_continued_once_preferring_the_same_file():
    vhe = _finding()
    nvhe = _finding(file="arch/arm64/kvm/hyp/nvhe/switch.c")
    assert vhe.fingerprint == nvhe.fingerprint and vhe.key != nvhe.key
    assert match([nvhe, vhe], [vhe]) == {1: 0}
    assert match([nvhe, vhe], [vhe, nvhe]) == {0: 1, 1: 0}


def _earlier(*found: Finding, dismissed: bool = False, first_seen: int = 1) -> EarlierRevision:
    return EarlierRevision(message_id="v1@example.org", revision=2,
                           source=EarlierSource.COMPARE_TO,
                           findings=tuple(EarlierFinding(finding=f, first_seen=first_seen,
                                                         dismissed=dismissed) for f in found))


def test_compare_marks_new_still_present_and_resolved():
    kept = _finding()
    fixed = _finding(rule="same-value", category=Category.SAME_VALUE, evidence=("x",))
    fresh = _finding(rule="barrier", category=Category.BARRIER, evidence=("y",))
    rules = RuleResult(findings=(dataclasses.replace(kept, patch=4, line=99), fresh),
                       pre_existing=(), errors=())
    out, comparison = compare(rules, _earlier(kept, fixed), revision=3)
    assert [(f.rule, f.revision_status, f.first_seen) for f in out.findings] == [
        ("register-width", RevisionStatus.STILL_PRESENT, 1), ("barrier", RevisionStatus.NEW, 3)]
    assert [(r.finding.rule, r.revision, r.first_seen, r.resolved_in)
            for r in comparison.resolved] == [("same-value", 2, 1, 3)]
    assert comparison.continued[out.findings[0].key].finding is kept


def test_a_dismissed_or_already_resolved_finding_is_not_reported_resolved():
    gone = _finding()
    _, comparison = compare(RuleResult(findings=(), pre_existing=(), errors=()),
                            _earlier(gone, dismissed=True), revision=3)
    assert comparison.resolved == ()
    _, comparison = compare(RuleResult(findings=(), pre_existing=(), errors=()),
                            _earlier(dataclasses.replace(gone, status=Status.RESOLVED_IN_SERIES)),
                            revision=3)
    assert comparison.resolved == ()


def test_drafts_leave_out_a_dismissed_finding_and_optionally_a_still_present_one():
    kept, dismissed, fresh = (_finding(), _finding(rule="polarity", evidence=("p",)),
                              _finding(rule="barrier", evidence=("b",)))
    earlier = EarlierRevision(message_id="v1@example.org", revision=1,
                              source=EarlierSource.DATABASE, findings=(
                                  EarlierFinding(finding=kept, first_seen=1),
                                  EarlierFinding(finding=dismissed, first_seen=1,
                                                 dismissed=True)))
    out, comparison = compare(RuleResult(findings=(kept, dismissed, fresh), pre_existing=(),
                                         errors=()), earlier, revision=2)
    assert [f.rule for f in drafted(out.findings, comparison, True)] == ["register-width",
                                                                          "barrier"]
    assert [f.rule for f in drafted(out.findings, comparison, False)] == ["barrier"]
    assert drafted(out.findings, None, False) == out.findings


def test_choose_prefers_compare_to_then_the_latest_earlier_revision_stored_on_a_tie():
    def rev(n: int, source: EarlierSource) -> EarlierRevision:
        return EarlierRevision(message_id="%d-%s" % (n, source), revision=n, source=source)
    thread, stored = rev(2, EarlierSource.THREAD), rev(2, EarlierSource.DATABASE)
    assert choose(3, [thread, stored, None]) is stored
    assert choose(3, [rev(1, EarlierSource.DATABASE), thread]) is thread
    assert choose(2, [thread, stored]) is None  # not earlier than v2
    given = rev(5, EarlierSource.COMPARE_TO)
    assert choose(3, [thread, given]) is given


def test_fingerprint_ignores_place_and_message_id_but_not_rule_register_or_evidence():
    f = _finding()
    same = dataclasses.replace(f, patch=7, line=1, file="arch/arm64/kvm/hyp/switch.c",
                               message_id="other@example.org", message="reworded")
    assert same.fingerprint == f.fingerprint
    for changed in (dataclasses.replace(f, rule="same-value"),
                    dataclasses.replace(f, register="MDCR_EL2"),
                    dataclasses.replace(f, fields=("TGE",)),
                    dataclasses.replace(f, evidence=("\tu32 hcr = 0;",))):
        assert changed.fingerprint != f.fingerprint
    assert re.fullmatch(r"[0-9a-f]{40}", f.fingerprint)
