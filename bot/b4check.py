"""What b4 hands a check command, turned into `bot check` inputs.

b4 runs `review-perpatch-check-cmd` once per patch and
`review-series-check-cmd` once per series, in the kernel tree, with one
message on stdin (original headers over a body it already decoded; see
`bot.parse.mail`) and, for a series it tracks, `B4_TRACKING_FILE` naming a
JSON file of its tracking data. That data names the whole thread as a git
blob of the kernel tree (`series.thread-blob`, an mbox) and the base the
series was applied to (`series.base-commit`). With them the patch is checked
inside its series, exactly as `bot check` checks a thread: a problem a later
patch fixes is resolved-in-series, code the series only moves is
pre-existing. Without them (no file, the blob garbage-collected, not a git
tree) the patch is checked alone and the b4 summary says why.

Nothing here chooses a command from mail: the blob id comes from b4's file
and must be a hex object id; git gets it as one argument.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import BinaryIO

from bot.config import Config
from bot.errors import BadInput
from bot.output.b4review import Context
from bot.sources import StreamInput, thread_headers

logger = logging.getLogger(__name__)

TRACKING_VAR = "B4_TRACKING_FILE"
_OBJECT_ID = re.compile(r"^[0-9a-f]{7,64}$")
_GIT_TIMEOUT = 30
# b4's tracking data is a few kilobytes; refuse anything absurd.
_MAX_TRACKING_BYTES = 16 << 20
# Where a message's headers are looked for.
_HEAD = 1 << 16


@dataclass(frozen=True, slots=True, kw_only=True)
class B4Input:
    """What a b4 check reads: its inputs, the message b4 asks about, and b4's context."""

    specs: list[str | StreamInput]
    # The Message-ID of the one message on stdin (what b4 asks about).
    target: str | None
    context: Context


def prepare(sources: list[str], cfg: Config, environ: Mapping[str, str] | None = None,
            stdin: BinaryIO | None = None) -> B4Input:
    """The inputs of a b4 check: stdin's message, then its thread from b4's
    tracking data when there is one."""
    env = os.environ if environ is None else environ
    specs: list[str | StreamInput] = []
    target = None
    for spec in sources:
        if spec != "-":
            specs.append(spec)
            continue
        stream = stdin if stdin is not None else sys.stdin.buffer
        spool, head = _spool(stream, cfg.input.max_message_bytes)
        if not head.strip():
            raise BadInput("-: empty input")
        if not head.startswith(b"From ") or b"\nFrom " not in head:
            target, _ = thread_headers(head)
        specs.append(StreamInput("-", spool))
    context = Context()
    if env.get(TRACKING_VAR):
        thread, context = _thread(env[TRACKING_VAR], cfg.input.max_inflated_bytes)
        if thread is not None:
            specs.append(thread)
    return B4Input(specs=specs, target=target, context=context)


def _spool(stream: BinaryIO, cap: int) -> tuple[BinaryIO, bytes]:
    """stdin in a file (in memory up to `cap`), and its first 64 KiB for the
    headers. An oversized message is kept whole so the input layer can
    report its size; past four times the cap it is refused outright, like
    any other stdin input."""
    spool = tempfile.SpooledTemporaryFile(max_size=cap + 1)  # noqa: SIM115 (the caller's)
    head = b""
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
        if total > cap * 4:
            raise BadInput("-: standard input is larger than input.max_message_bytes allows")
        if len(head) < _HEAD:
            head += chunk[:_HEAD - len(head)]
        spool.write(chunk)
    spool.seek(0)
    return spool, head  # type: ignore[return-value]


def _thread(path: str, cap: int) -> tuple[StreamInput | None, Context]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_TRACKING_BYTES + 1)
        if len(raw) > _MAX_TRACKING_BYTES:
            raise ValueError("larger than %d bytes" % _MAX_TRACKING_BYTES)
        tracking = json.loads(raw)
        series = tracking.get("series") if isinstance(tracking, dict) else None
        if not isinstance(series, dict):
            raise ValueError("no series object")
    except (OSError, ValueError) as exc:
        why = "%s %s: %s" % (TRACKING_VAR, path, getattr(exc, "strerror", None) or exc)
        logger.warning("%s", why)
        return None, Context(unavailable=why)
    base = series.get("base-commit")
    base = base if isinstance(base, str) and _OBJECT_ID.match(base) else ""
    blob = series.get("thread-blob")
    if not isinstance(blob, str) or not _OBJECT_ID.match(blob):
        return None, Context(base_commit=base, unavailable="b4's tracking data has no "
                             "thread-blob (run `b4 review` update to fetch the thread)")
    try:
        proc = subprocess.run(["git", "cat-file", "blob", blob], capture_output=True,
                              timeout=_GIT_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return None, Context(base_commit=base, unavailable="git cat-file: %s" % exc)
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = "thread-blob %s not readable here: %s" % (blob[:12], err[-1] if err else
                                                          "git exit %d" % proc.returncode)
        logger.warning("%s", why)
        return None, Context(base_commit=base, unavailable=why)
    if len(proc.stdout) > cap:
        return None, Context(base_commit=base, unavailable="thread-blob %s is larger than "
                             "input.max_inflated_bytes" % blob[:12])
    logger.debug("series context from thread-blob %s (%d bytes)", blob, len(proc.stdout))
    return (StreamInput("b4 thread-blob %s" % blob[:12], io.BytesIO(proc.stdout)),
            Context(with_series=True, base_commit=base))
