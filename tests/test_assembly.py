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
