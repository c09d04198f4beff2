"""Cutting inputs into messages: exact, whatever the block boundaries."""

import gzip

from hypothesis import given, settings
from hypothesis import strategies as st

import bot.sources
from bot.config import InputConfig
from bot.sources import InputSet, StreamInput

_LINE = st.text(alphabet=st.sampled_from(list("From >abc:\t")), max_size=12)


def _mbox(bodies):
    out = b""
    for i, body in enumerate(bodies):
        escaped = b"\n".join((b">" + ln) if ln.lstrip(b">").startswith(b"From ") else ln
                             for ln in body.split(b"\n"))
        out += b"From mboxrd@z Thu Jan  1 00:00:00 1970\nMessage-ID: <m%d@x>\n\n%s\n\n" % (
            i, escaped)
    return out


@settings(max_examples=200, deadline=None)
@given(chunk=st.sampled_from([5, 7, 13, 64, 1 << 20]),
       bodies=st.lists(st.lists(_LINE, min_size=1, max_size=6).map(
           lambda lines: "\n".join(lines).encode()), min_size=1, max_size=5))
def test_mbox_split_is_exact(chunk, bodies):
    old = bot.sources._CHUNK
    bot.sources._CHUNK = chunk
    try:
        import io
        data = _mbox(bodies)
        inputs = InputSet([StreamInput(name="t.mbox", file=io.BytesIO(data))], InputConfig())
        got = [raw.data for raws in inputs.threads() for raw in raws]
    finally:
        bot.sources._CHUNK = old
    want = [b"Message-ID: <m%d@x>\n\n%s\n" % (i, b) for i, b in enumerate(bodies)]
    assert got == want


def test_gzip_and_plain_give_the_same_messages(tmp_path):
    plain = tmp_path / "a.mbox"
    plain.write_bytes(_mbox([b"one", b"From the start\n>From quoted", b"three"]))
    packed = tmp_path / "a.mbox.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    read = lambda p: [r.data for t in InputSet([str(p)], InputConfig()).threads() for r in t]
    assert read(plain) == read(packed)
    assert read(plain)[1].endswith(b"\n\nFrom the start\n>From quoted\n")


def test_maildir(tmp_path):
    for sub in ("cur", "new", "tmp"):
        (tmp_path / "md" / sub).mkdir(parents=True)
    (tmp_path / "md" / "new" / "1").write_bytes(b"Message-ID: <a@x>\n\nhello\n")
    (tmp_path / "md" / "cur" / "2:2,S").write_bytes(b"Message-ID: <b@x>\nIn-Reply-To: <a@x>\n\nre\n")
    (tmp_path / "md" / "new" / "3").write_bytes(b"Message-ID: <c@x>\n\nanother topic\n")
    inputs = InputSet([str(tmp_path / "md")], InputConfig())
    # Counted before any thread is read (`bot check` starts its rules
    # worker at once when many are ahead: Checker.expect).
    assert (inputs.message_count, inputs.thread_count) == (3, 2)
    threads = sorted(inputs.threads(), key=len)
    assert [len(t) for t in threads] == [1, 2]
