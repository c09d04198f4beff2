"""Rendered reply drafts: golden files for real threads, the shape of an
inline reply, wrapping, non-ASCII names, hostile headers, noise limits and
the Cc policy.

The golden files under tests/data/drafts/golden/ show exactly what the bot
would send for each input; any difference fails. After a deliberate change
(templates, rule wording), regenerate them and review the diff:

    .venv/bin/python -m pytest tests/test_drafts_render.py --regen-golden
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import email.utils
import re
from pathlib import Path

import pytest

from bot import config as botconfig
from bot.data import Draft, Severity
from bot.drafts import headers, render
from bot.drafts.message import Outgoing, as_smtp, build
from bot.drafts.quote import CONTEXT, anchor, sentence
from tests.conftest import DATA, compare_golden
from tests.drafts_support import as_text, check, drafts_of

DRAFTS = DATA / "drafts"
GOLDEN = DRAFTS / "golden"
RULES = DATA / "rules"
POLARITY = DATA / "labelled" / "problem-polarity-drop-fb.mbox"
WIDTH = DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox"
SERIES = DRAFTS / "series-two-findings.mbox"

# Real kvmarm mail first (tests/data/README.md), then the realistic patch of
# every rule family that must trigger.
INPUTS = (sorted(DRAFTS.glob("*.mbox")) + sorted((DATA / "labelled").glob("problem-*.mbox"))
          + [RULES / "host-flags-trigger.mbox"] + sorted(RULES.glob("*-trigger*.patch")))
# drafts.* settings a golden file is rendered with (defaults otherwise).
OPTIONS = {"series-two-findings": {"cover_summary": True}}
SEPARATOR = "\n" + "=" * 72 + "\n"


def _rendered(path: Path) -> str:
    found = drafts_of(path, **OPTIONS.get(path.stem, {}))
    return SEPARATOR.join(as_text(d) for d in found) if found else "(no draft)\n"


@pytest.mark.parametrize("path", INPUTS, ids=lambda p: p.name)
def test_golden_drafts(path: Path, regen_golden: bool) -> None:
    compare_golden(GOLDEN / (path.stem + ".txt"), _rendered(path), regen_golden)


def test_every_golden_file_has_its_input() -> None:
    stems = {p.stem for p in INPUTS}
    stale = [g.name for g in GOLDEN.glob("*.txt") if g.stem not in stems]
    assert stale == []


ATTRIBUTION = re.compile(r"^On (Mon|Tue|Wed|Thu|Fri|Sat|Sun), [A-Z][a-z]{2} \d\d, \d{4} at "
                         r"\d\d:\d\d:\d\d[AP]M [+-]\d{4}, [^<>@]+ wrote:$")
STRUCTURE = re.compile(r"^> (diff --git |@@ |\[\.\.\.\])")


def _all_drafts() -> list[tuple[Path, Draft, str]]:
    out = []
    for path in INPUTS:
        raw = path.read_text(encoding="utf-8", errors="replace")
        out += [(path, d, raw) for d in drafts_of(path, **OPTIONS.get(path.stem, {}))]
    return out


def test_every_draft_reads_like_an_inline_reply() -> None:
    found = _all_drafts()
    assert len(found) >= 20
    for path, d, raw in found:
        where = "%s: %s" % (path.name, d.subject)
        assert d.subject.startswith("Re: ") and not d.subject.lower().startswith("re: re:")
        lines = d.body.split("\n")
        assert ATTRIBUTION.match(lines[0]), (where, lines[0])
        assert lines[1].startswith("> "), (where, "top-posting or a blank line after "
                                           "the attribution")
        sig = lines.index("-- ")
        assert lines[sig - 1] == "" and lines[sig + 1] and d.body.endswith("\n")
        text = lines[1:sig]
        source = {ln.rstrip() for ln in raw.splitlines()}
        in_block = 0
        for i, ln in enumerate(text):
            if ln.startswith(">"):
                quoted = ln[2:]
                if STRUCTURE.match(ln):
                    in_block = 0
                else:
                    # Quoted exactly as the patch has it (never re-wrapped).
                    assert quoted in source, (where, ln)
                    in_block += 1
                    # The line a remark is about plus at most CONTEXT before it.
                    assert in_block <= CONTEXT + 1, (where, ln)
            elif ln:
                in_block = 0
                # A remark is wrapped at 72 (a longer line is one long token),
                # and separated from the quote above it by a blank line.
                assert len(ln) <= 72 or " " not in ln.strip(), (where, ln)
                assert not text[i - 1].startswith(">"), (where, ln)
        for ln in lines[sig + 1:]:
            assert len(ln) <= 72


def test_each_remark_sits_under_the_line_it_is_about() -> None:
    """Under the line of the hunk the finding is about (`quote.anchor`), with
    one blank line between; checked for every drafted finding."""
    placed = 0
    for path in INPUTS:
        for result in check(path, **OPTIONS.get(path.stem, {})):
            bodies = {d.patch: d.body.split("\n") for d in result.drafts}
            for f in result.rules.findings:
                if f.patch not in bodies or f.hunk is None:
                    continue
                lines = bodies[f.patch]
                head = " ".join(sentence(f.message).split()[:5])
                at = next(i for i, ln in enumerate(lines) if ln.startswith(head))
                if lines[at - 2].startswith(">"):
                    expected = f.hunk.lines[anchor(f.hunk, f)]
                    assert lines[at - 1] == ""
                    assert lines[at - 2] == ("> " + str(expected.kind) + expected.text).rstrip()
                    placed += 1
    assert placed >= 20
    [d] = drafts_of(WIDTH)
    lines = d.body.split("\n")
    at = next(i for i, ln in enumerate(lines) if ln.startswith("GENMASK(16, 0) keeps"))
    assert lines[at - 2:at] == ["> +\tu16 imm = (hcr >> shift) & GENMASK(16, 0);", ""]


def test_question_findings_are_asked() -> None:
    asked = 0
    for path in INPUTS:
        for result in check(path, **OPTIONS.get(path.stem, {})):
            bodies = "\n".join(d.body for d in result.drafts if d.patch)
            for f in result.rules.findings:
                if f.severity is not Severity.QUESTION or not result.drafts:
                    continue
                start = bodies.index(" ".join(sentence(f.message).split()[:5]))
                paragraph = bodies[start:bodies.index("\n\n", start)]
                assert "?" in paragraph, paragraph
                asked += 1
    assert asked >= 8


def _replace_finding(path: Path, **changes: object):  # type: ignore[no-untyped-def]
    [result] = check(path)
    findings = tuple(dataclasses.replace(f, **changes) for f in result.rules.findings)
    return result.series, findings


def test_long_remarks_are_wrapped_and_long_tokens_kept_whole() -> None:
    token = "vcpu->arch.ctxt.sys_regs[MDCR_EL2_SHADOW_HOST_VALUE_BEFORE_THE_FIRST_VCPU_LOAD]"
    message = ("a very long remark that goes on " * 6) + token + " and then some more words."
    series, findings = _replace_finding(WIDTH, message=message)
    [d] = render(series, findings, botconfig.Config().drafts)
    remark = d.body.split("\n\n")[1].split("\n")
    assert len(remark) > 3 and token in remark
    assert all(len(ln) <= 72 for ln in remark if ln != token)
    code = "+\tu16 imm = (hcr >> shift) & GENMASK(16, 0);"
    assert "> " + code in d.body  # the quoted line is the patch's, whole


def test_a_long_quoted_code_line_is_not_rewrapped() -> None:
    raw = POLARITY.read_bytes()
    long_line = b"+\t\t\t HCR_BSU_IS | HCR_TAC | /* " + b"x" * 120 + b" */ \\"
    raw = raw.replace(b"+\t\t\t HCR_BSU_IS | HCR_TAC | \\", long_line)
    [d] = drafts_of(raw)
    assert ("> " + long_line.decode()) in d.body.split("\n")


def _with_headers(path: Path, **values: str) -> bytes:
    raw = path.read_bytes()
    head, sep, body = raw.partition(b"\n\n")
    for name, value in values.items():
        field = name.replace("_", "-").encode()
        head, n = re.subn(rb"(?mi)^" + field + rb":.*(\n[ \t].*)*$",
                          field + b": " + value.encode(), head, count=1)
        if not n:
            head += b"\n" + field + b": " + value.encode()
    return head + sep + body


def test_non_ascii_names_in_attribution_and_headers() -> None:
    raw = _with_headers(POLARITY, From="=?utf-8?q?Sha=C3=B2kun_Zh=C4=81ng?= "
                        "<zhangshaokun@hisilicon.com>",
                        Cc="=?utf-8?q?J=C3=A9r=C3=B4me_M=C3=BCller?= <jm@example.org>")
    [d] = drafts_of(raw)
    assert d.body.startswith("On Thu, Oct 22, 2020 at 09:57:09AM +0800, Shaòkun Zhāng wrote:")
    assert d.to == ("Shaòkun Zhāng <zhangshaokun@hisilicon.com>",)
    assert "Jérôme Müller <jm@example.org>" in d.cc
    out = Outgoing(sender="Marc Zyngier <maz@kernel.org>", to=d.to, cc=d.cc, subject=d.subject,
                   in_reply_to=d.in_reply_to, references=d.references,
                   message_id="test-1@kernel.org", body=d.body + "Merci, Jérôme\n")
    data = as_smtp(build(out, dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    assert data.isascii() is False  # the body is 8bit UTF-8, the headers encoded words
    head = data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and b"=?utf-8?" in head
    back = email.message_from_bytes(data, policy=email.policy.default)
    assert str(back["To"]) == "Shaòkun Zhāng <zhangshaokun@hisilicon.com>"
    assert "Jérôme Müller <jm@example.org>" in str(back["Cc"])
    assert back.get_content().replace("\r\n", "\n").endswith("Merci, Jérôme\n")


HOSTILE = {
    # Encoded once (the parse layer decodes it), and encoded twice: decoded
    # once, it is a literal encoded word that Python's email library would
    # decode again when writing our reply.
    "Subject": "=?utf-8?q?[RFC]_KVM:_arm64:_evil=0D=0ABcc:_victim@example.org=0A=0Abody?= "
               "=?utf-8?q?=3D=3Futf-8=3Fq=3F=3D0D=3D0ABcc=3A=5Fvictim4=40example.org=3F=3D?=",
    "From": "=?utf-8?q?Shaokun=0D=0ABcc:_victim2@example.org?= <zhangshaokun@hisilicon.com>",
    "Cc": "=?utf-8?q?Mallory=0ABcc:_v3@example.org?= <mallory@example.org>, "
          "\"x =?utf-8?q?=0D=0ABcc:_v5@example.org?=\" <w@example.org>, "
          "\"x\\\" <y@example.org>\" <z@example.org>, not an address, <bad@@example..org>",
    "References": "<good@example.org> <bad=?utf-8?q?=0D=0A?=X-Evil:@example.org> "
                  "<<nested>@x> <sp ace@example.org>",
}


def test_hostile_headers_never_reach_a_header() -> None:
    [d] = drafts_of(_with_headers(POLARITY, **HOSTILE))
    fields = [d.subject, d.in_reply_to, *d.references, *d.to, *d.cc]
    assert all(not re.search(r"[\x00-\x1f\x7f\u2028\u2029]", f) for f in fields), fields
    # Kept only what can stand in a header as it is: one printable token each.
    assert d.references[0] == "good@example.org" and d.references[-1] == d.in_reply_to
    assert all(re.fullmatch(r"[!-;=?-~]+@[!-;=?-~]+", r) for r in d.references)
    assert not any("nested" in r or "sp ace" in r for r in d.references)
    # A display name may carry text that looks like an address; whatever the
    # parse makes of it, each recipient is one re-serialised address (the
    # sender chooses its own From and Cc anyway: no new recipient is won).
    assert len(d.to) <= 1  # none when the parse could not make an address of From
    for a in d.to + d.cc:
        assert headers.address(*email.utils.parseaddr(a)) == a
    assert "bad@@example..org" not in str(d.cc)
    msg = build(Outgoing(sender="Marc Zyngier <maz@kernel.org>", to=d.to, cc=d.cc,
                         subject=d.subject, in_reply_to=d.in_reply_to,
                         references=d.references, message_id="m-1@kernel.org", body=d.body),
                dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    data = as_smtp(msg)
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [ln.split(":", 1)[0].lower() for ln in head.split("\r\n") if ln[:1] not in " \t"]
    assert "bcc" not in names and "x-evil" not in names
    assert sorted(names) == sorted(["from", "cc", "subject", "date", "message-id",
                                    "in-reply-to", "references", "content-type",
                                    "content-transfer-encoding", "mime-version"]
                                   + (["to"] if d.to else []))
    back = email.message_from_bytes(data, policy=email.policy.default)
    recipients = [a.addr_spec for h in ("To", "Cc") if back[h] for a in back[h].addresses]
    assert sorted(recipients) == sorted(headers.bare(a) for a in d.to + d.cc)
    for victim in ("victim@example.org", "victim4@example.org", "v5@example.org"):
        assert victim not in recipients  # only ever text inside a header
    assert str(back["Subject"]) == d.subject and "\n" not in d.subject


def test_a_message_id_unfit_for_a_header_is_left_out_of_the_mail() -> None:
    for mid in ("<a b@example.org>", "<<script>alert(1)</script>@x.example>",
                "<x=?utf-8?q?=0D=0ABcc:_y@example.org?=@example.org>"):
        [d] = drafts_of(_with_headers(POLARITY, Message_ID=mid))
        assert "\n" not in d.in_reply_to and "\r" not in d.in_reply_to
        msg = build(Outgoing(sender="Marc Zyngier <maz@kernel.org>", to=d.to, cc=d.cc,
                             subject=d.subject, in_reply_to=d.in_reply_to,
                             references=d.references, message_id="m-2@kernel.org",
                             body=d.body), dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        head = as_smtp(msg).split(b"\r\n\r\n", 1)[0].decode("ascii")
        assert msg["In-Reply-To"] is None and msg["References"] is None, head
        assert "bcc" not in head.lower()
    assert headers.clean_msgid("<ok@example.org>") == "ok@example.org"
    for bad in ("<a b@example.org>", "<a<b@example.org>", "no-at-sign", "<x@y>\r\nBcc: z",
                "<=?utf-8?q?a?=@example.org>"):
        assert headers.clean_msgid(bad) is None, bad


@pytest.mark.parametrize("subject, expected", [
    ("[PATCH] x", "Re: [PATCH] x"),
    ("Re: [PATCH] x", "Re: [PATCH] x"),
    ("RE: re:Re : [PATCH] x", "Re: [PATCH] x"),
    ("Aw: Re[2]: [PATCH] x", "Re: [PATCH] x"),
    ("[PATCH] Re: the subject", "Re: [PATCH] Re: the subject"),
])
def test_reply_subject_is_never_re_re(subject: str, expected: str) -> None:
    # b4 does not take a mail whose subject starts with Re: for a patch, so
    # the subject is changed after assembly.
    [result] = check(POLARITY)
    series = result.series
    patch = series.patches[0]
    patch = dataclasses.replace(patch, mail=dataclasses.replace(patch.mail, subject=subject))
    series = dataclasses.replace(series, patches=(patch,))
    [d] = render(series, result.rules.findings, botconfig.Config().drafts)
    assert d.subject == expected


def test_noise_limits() -> None:
    assert drafts_of(POLARITY, min_severity="warning") == []
    assert len(drafts_of(POLARITY, min_severity="question")) == 1
    assert drafts_of(POLARITY, never_authors=("*@hisilicon.com",)) == []
    assert drafts_of(POLARITY, never_lists=("kvmarm.lists.cs.columbia.edu",)) == []
    assert drafts_of(POLARITY, only_lists=("kvm@vger.kernel.org",)) == []
    assert len(drafts_of(POLARITY, only_lists=("kvmarm@lists.cs.columbia.edu",))) == 1
    [result] = check(SERIES)
    cfg = botconfig.Config().drafts
    assert [d.patch for d in render(result.series, result.rules.findings, cfg)] == [1, 2]
    one = dataclasses.replace(cfg, max_per_series=1)
    # Equally severe: the first patch; a more severe finding wins.
    assert [d.patch for d in render(result.series, result.rules.findings, one)] == [1]
    worse = tuple(dataclasses.replace(f, severity=Severity.ERROR) if f.patch == 2 else f
                  for f in result.rules.findings)
    assert [d.patch for d in render(result.series, worse, one)] == [2]


def test_cc_policy() -> None:
    [everyone] = drafts_of(POLARITY)
    assert everyone.to == ("Shaokun Zhang <zhangshaokun@hisilicon.com>",)
    assert everyone.cc == ("linux-arm-kernel@lists.infradead.org",
                           "kvmarm@lists.cs.columbia.edu", "Marc Zyngier <maz@kernel.org>")
    [lists] = drafts_of(POLARITY, cc="lists")
    assert lists.cc == ("linux-arm-kernel@lists.infradead.org", "kvmarm@lists.cs.columbia.edu")
    [author] = drafts_of(POLARITY, cc="author", cc_extra=("Reviewers <r@example.org>",))
    assert author.to == everyone.to and author.cc == ("Reviewers <r@example.org>",)


def test_cover_summary_only_when_asked_and_several_patches_have_findings() -> None:
    assert [d.patch for d in drafts_of(SERIES)] == [1, 2]
    cover, *rest = drafts_of(SERIES, cover_summary=True)
    assert cover.patch == 0 and cover.in_reply_to == "series-two-findings-0@example.org"
    assert "- 1/2 \"KVM: arm64: Keep the host MDCR_EL2 in the vcpu\"" in cover.body
    assert "- 2/2" in cover.body and len(rest) == 2
    assert [d.patch for d in drafts_of(POLARITY, cover_summary=True)] == [1]


def test_a_note_goes_under_its_remark() -> None:
    [result] = check(POLARITY)
    [f] = result.rules.findings
    [d] = render(result.series, result.rules.findings, botconfig.Config().drafts,
                 notes={f.fingerprint: "Still present since v1."})
    remark_end = d.body.index("?\n") + 2
    assert d.body[remark_end:].startswith("Still present since v1.\n\n-- \n")
