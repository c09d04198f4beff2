"""Known findings for command-line and CI use: `bot check --baseline FILE`
reports only findings the file does not list, `--write-baseline FILE`
records the current ones.

The file is plain text, one finding per line: its fingerprint
(`Finding.fingerprint`: rule, place and evidence, so it survives line
moves and re-checks) and the reason it is accepted, which a person writes
or edits. A comment above each entry says which finding it is. Rewriting
the file keeps the reasons already given, adds the new findings and drops
those that are gone, so its diff in review shows exactly what changed:

    # register-width warning arch/arm64/kvm/arm.c:1867 <msgid>
    #   GENMASK(16, 0) keeps 17 bits of the HCR_EL2 value, but imm is a u16 ...
    9f2c41d0...  reviewed on the list: the 17th bit is masked off by the caller
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

from bot.data import Finding
from bot.errors import BadInput
from bot.output.terminal import clean
from bot.output.view import where

logger = logging.getLogger(__name__)

_ENTRY = re.compile(r"^([0-9a-f]{16,64})(?:[ \t]+(\S.*?))?\s*$")
_HEADER = """\
# kvm-sysreg-review-bot baseline: findings `bot check --baseline` does not report.
# One per line: the finding's fingerprint, then why it is accepted (edit it).
# `bot check --write-baseline` rewrites the file, keeping the reasons given.
"""


def read(path: str) -> dict[str, str]:
    """Fingerprint -> reason, from a baseline file."""
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise BadInput("%s: no such baseline file" % path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput("%s: cannot read the baseline: %s"
                       % (path, getattr(exc, "strerror", None) or exc)) from None
    known: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = _ENTRY.match(line.strip())
        if m is None:
            raise BadInput("%s:%d: expected a finding fingerprint (hex) and a reason" % (path, n))
        if not m.group(2):
            raise BadInput("%s:%d: the entry for %s gives no reason" % (path, n, m.group(1)))
        known[m.group(1)] = m.group(2)
    return known


def write(path: str, findings: Iterable[Finding], today: dt.date | None = None) -> str:
    """Record `findings` in the baseline at `path`; returns what changed, in words."""
    old = read(path) if os.path.exists(path) else {}
    default = "known when the baseline was written (%s)" % (today or dt.date.today()).isoformat()
    entries: dict[str, str] = {}
    text = [_HEADER]
    for f in findings:
        key = f.fingerprint
        if key in entries:
            continue
        entries[key] = old.get(key, default)
        text.append("\n# %s %s %s <%s>\n#   %s\n%s  %s\n" % (
            f.rule, f.severity, clean(where(f)), clean(f.message_id), clean(f.message),
            key, clean(entries[key])))
    target = Path(path)
    tmp = None
    try:  # a new file beside the old one, renamed over it: never half written
        fd, tmp = tempfile.mkstemp(prefix=".baseline-", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write("".join(text))
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise BadInput("%s: cannot write the baseline: %s"
                       % (path, exc.strerror or exc)) from None
    kept = len(set(entries) & set(old))
    return "%s: %d known findings (%d new, %d kept, %d gone)" % (
        path, len(entries), len(entries) - kept, kept, len(set(old) - set(entries)))
