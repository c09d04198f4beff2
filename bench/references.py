#!/usr/bin/env python3
"""Cost of a flood of References: threading must stay linear in its length.

    bench/references.py [COUNT...]

For each count (default 16000 48000 100000, the sizes where the bot and b4
used to take 6.7 s, 76 s and over 300 s), a reply carrying that many
References (100,000 is a message of about 2.6 MB) follows a real kvmarm
patch; prints the seconds spent reading its threading headers (the input
layer), parsing it (bot.parse.mail), assembling the thread with b4
(bot.lore.assemble), and the whole `bot check --format json` in a fresh
process, with how many References b4 was handed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import b4  # noqa: E402

from bot.config import InputConfig  # noqa: E402
from bot.lore.assemble import assemble  # noqa: E402
from bot.parse.mail import parse_mail  # noqa: E402
from bot.sources import InputSet, thread_headers  # noqa: E402

REAL = ROOT / "tests" / "data" / "labelled" / "problem-polarity-drop-fb.mbox"
REAL_ID = b"1603331829-33879-1-git-send-email-zhangshaokun@hisilicon.com"


def flood(count: int) -> bytes:
    refs = b"\n ".join(b"<ref-%06d@flood.example>" % i for i in range(count))
    return (b"From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: A <a@example.org>\n"
            b"Subject: Re: [RFC] KVM: arm64: Don't force broadcast tlbi\n"
            b"Message-ID: <flood@example.org>\nIn-Reply-To: <%s>\nReferences: %s <%s>\n\n"
            b"Acked-by: A <a@example.org>\n\n" % (REAL_ID, refs, REAL_ID))


def timed(func):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def main(counts: list[int]) -> None:
    handed: list[int] = []
    real_add = b4.LoreMailbox.add_message

    def recording(self, msg):  # type: ignore[no-untyped-def]
        handed.append(len(str(msg.get("References", "")).split()))
        return real_add(self, msg)

    b4.LoreMailbox.add_message = recording  # type: ignore[method-assign]
    print("%9s %9s %10s %8s %9s %10s %6s" % ("refs", "bytes", "headers s", "parse s",
                                             "b4 s", "command s", "to b4"))
    with tempfile.TemporaryDirectory() as tmp:
        for count in counts:
            data = flood(count)
            message = data.split(b"\n", 1)[1]
            path = Path(tmp) / ("flood-%d.mbox" % count)
            path.write_bytes(REAL.read_bytes().rstrip(b"\n") + b"\n\n" + data)
            argv = [sys.executable, "-m", "bot", "check", "--format", "json", str(path)]
            t_headers, _ = timed(partial(thread_headers, message))
            t_parse, _ = timed(partial(parse_mail, message))
            (raws,) = InputSet([str(path)], InputConfig()).threads()
            handed.clear()
            t_b4, _ = timed(partial(assemble, raws))
            t_cmd, proc = timed(partial(subprocess.run, argv, capture_output=True, cwd=tmp))
            assert proc.returncode in (0, 1), proc.stderr
            print("%9d %9d %10.3f %8.3f %9.3f %10.2f %6d" % (
                count, len(data), t_headers, t_parse, t_b4, t_cmd, max(handed)))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [16000, 48000, 100000])
