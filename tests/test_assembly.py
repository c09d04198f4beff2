"""Subject parsing and series assembly (b4's machinery) on real trimmed threads."""

from pathlib import Path

import pytest

from bot.config import InputConfig
from bot.data import lineage_key, normalize_subject
from bot.lore.assemble import assemble, parse_subject
from bot.sources import InputSet

THREADS = Path(__file__).parent / "data" / "threads"


@pytest.mark.parametrize("subject, revision, counter, expected, flags", [
    ("[PATCH] arm64: KVM: fix", 1, 1, 1, set()),
    ("[PATCH v3 2/7] KVM: arm64: Drop HCR_TAC", 3, 2, 7, set()),
    ("[PATCHv2 0/5] series", 2, 0, 5, set()),
    ("[RFC PATCH v4 10/12] x", 4, 10, 12, {"rfc"}),
    ("[PATCH RESEND v2 1/1] y", 2, 1, 1, {"resend"}),
    ("Re: [PATCH v2 3/3] z", 2, 3, 3, {"reply"}),
    ("[PATCH [v5] 2/4] nested brackets", 5, 2, 4, set()),
    ("[PATCH 06/16] zero-padded", 1, 6, 16, set()),
    ("[PATCH AUTOSEL 4.4 5/8] KVM: arm/arm64: x", 1, 5, 8, set()),
])
def test_subject(subject, revision, counter, expected, flags):
    s = parse_subject(subject)
    assert (s.revision, s.counter, s.expected) == (revision, counter, expected)
    assert s.rfc == ("rfc" in flags)
    assert s.resend == ("resend" in flags)
    assert s.reply == ("reply" in flags)


def test_normalized_subject_links_revisions():
    a = normalize_subject("[PATCH v2 1/3] KVM: arm64: Stop  writing ACTLR")
    b = normalize_subject("Re: [RFC PATCH v5 1/3] KVM: arm64: stop writing ACTLR")
    assert a == b == "kvm: arm64: stop writing actlr"
    assert lineage_key(None, "A@x.org", "[PATCH v2] Foo") == lineage_key(None, "a@x.org", "[PATCH v3] foo")
    assert lineage_key("20200101-abc", "a@x", "Foo") == "change-id:20200101-abc"


def _threads(name):
    inputs = InputSet([str(THREADS / name)], InputConfig())
    return [assemble(raws) for raws in inputs.threads()]


def test_complete_series_with_cover():
    (thread,) = _threads("series-complete-v2.mbox")
    assert len(thread.messages) == 5
    (series,) = thread.series
    assert series.message_id == "20200529150656.7339-1-james.morse@arm.com"
    assert series.revision == 2 and series.total == 3
    assert series.cover is not None
    assert [p.index for p in series.patches] == [1, 2, 3]
    assert series.missing == ()
    assert series.author == "James Morse <james.morse@arm.com>"
    assert series.subject == "KVM: arm64: aarch32 ACTLR accesses"
    assert series.patches[1].paths == ("arch/arm64/kvm/sys_regs_generic_v8.c",)


def test_missing_patch_reported():
    (thread,) = _threads("series-missing-patch-2.mbox")
    (series,) = thread.series
    assert [p.index for p in series.patches] == [1, 3]
    assert series.missing == (2,)


def test_single_patch_of_larger_series():
    (thread,) = _threads("missing-patches-autosel.mbox")
    (series,) = thread.series
    assert [p.index for p in series.patches] == [5]
    assert series.total == 8
    assert series.missing == (1, 2, 3, 4, 6, 7, 8)


def test_v2_sent_in_reply_to_v1_is_a_second_revision_with_trailers():
    (thread,) = _threads("revision-v2-reply-to-v1.mbox")
    assert len(thread.messages) == 8
    v1, v2 = thread.series
    assert (v1.revision, v2.revision) == (1, 2)
    assert v1.lineage == v2.lineage
    assert v1.message_id == "20191016165953.o6ogh4fdmsjmd2sw@linutronix.de"
    assert v2.message_id == "20191128195805.c2pryug4ohmcoqwd@linutronix.de"
    assert [(t.name, t.author) for t in v1.patches[0].trailers] == [
        ("Reviewed-by", "James Morse <james.morse@arm.com>")]
    assert ("Acked-by", "Marc Zyngier <maz@kernel.org>") in [
        (t.name, t.author) for t in v2.patches[0].trailers]


def test_thread_with_only_replies_has_no_series():
    (thread,) = _threads("replies-only.mbox")
    assert len(thread.messages) == 2
    assert thread.series == ()
    assert thread.errors == ()


def test_unrelated_threads_in_one_input_are_separated():
    inputs = InputSet([str(p) for p in sorted(THREADS.glob("*.mbox"))
                       if p.name != "series-missing-patch-2.mbox"], InputConfig())
    threads = [assemble(raws) for raws in inputs.threads()]
    # One thread per file; revision-v2-reply-to-v1 holds two series.
    assert len(threads) == 6
    assert sorted(len(t.series) for t in threads) == [0, 1, 1, 1, 1, 2]


def _mbox_messages(path: Path) -> list[bytes]:
    from bot.sources import InputSet as _Inputs
    return [r.data for t in _Inputs([str(path)], InputConfig()).threads() for r in t]


def test_what_b4_is_given_keeps_series_trailers_and_deep_followups(tmp_path):
    """b4 sees a patch's diff header and series trailers only, and review
    replies only when they may lead to a trailer: the series' change-id
    below the diff and a Reviewed-by given in a reply to a review reply
    must still come through."""
    patch = next(d for d in _mbox_messages(THREADS / "series-complete-v2.mbox")
                 if b"Subject: [PATCH v2 1/3]" in d)
    # As `b4 send` writes them: below the diff, above the signature.
    assert b"\n-- \n" in patch
    patch = patch.replace(b"\n-- \n", b"\nchange-id: 20200529-actlr-1a2b3c\n"
                          b"base-commit: 0123456789abcdef0123456789abcdef01234567\n-- \n", 1)
    mid = b"20200529150656.7339-2-james.morse@arm.com"
    review = (b"From: Marc Zyngier <maz@kernel.org>\nSubject: Re: [PATCH v2 1/3] x\n"
              b"Message-ID: <review@kernel.org>\nIn-Reply-To: <" + mid + b">\n"
              b"References: <" + mid + b">\n\nLooks odd to me, one question below.\n")
    answer = (b"From: James Morse <james.morse@arm.com>\nSubject: Re: [PATCH v2 1/3] x\n"
              b"Message-ID: <answer@arm.com>\nIn-Reply-To: <review@kernel.org>\n"
              b"References: <" + mid + b"> <review@kernel.org>\n\nIt is fine, see above.\n")
    ack = (b"From: Marc Zyngier <maz@kernel.org>\nSubject: Re: [PATCH v2 1/3] x\n"
           b"Message-ID: <ack@kernel.org>\nIn-Reply-To: <answer@arm.com>\n"
           b"References: <" + mid + b"> <review@kernel.org> <answer@arm.com>\n\n"
           b"Fair enough.\n\nReviewed-by: Marc Zyngier <maz@kernel.org>\n")
    path = tmp_path / "t.mbox"
    path.write_bytes(b"".join(b"From x@y Thu Jan  1 00:00:00 1970\n" + m.rstrip(b"\n") + b"\n\n"
                              for m in (patch, review, answer, ack)))
    (thread,) = [assemble(raws) for raws in InputSet([str(path)], InputConfig()).threads()]
    (series,) = thread.series
    assert series.change_id == "20200529-actlr-1a2b3c"
    (p1,) = series.patches
    assert [(t.name, t.value, t.message_id) for t in p1.trailers] == [
        ("Reviewed-by", "Marc Zyngier <maz@kernel.org>", "ack@kernel.org")]
    # Our own view of the patch is whole: commit message and diff.
    assert "CSSELR" in p1.subject and "ACTLR" in p1.body.message
    assert p1.files and p1.files[0].hunks
