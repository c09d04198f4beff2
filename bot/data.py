"""The pipeline's data, shared by every stage: pure types, no behaviour beyond
what a value says about itself.

One message travels through these types from input to storage:

    RawMessage (bytes, Message-ID and threading IDs read once, at input)
      -> Mail (headers decoded, body chosen)          parse
      -> Patch / Series (b4's assembly)               parse (bot.lore.assemble)
      -> Finding (rule, place, the hunk it was found in)   rules
      -> Draft                                        drafts
    grouped as Thread -> ThreadResult -> SeriesResult for storing and output.

Everything is a frozen dataclass or a StrEnum, so a stage cannot change what
an earlier stage produced. Stages import this module; it imports nothing of
the bot.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# The longest Message-ID kept (RFC 5322 lines are at most 998 characters,
# and a Message-ID is the key of a stored message).
MESSAGE_ID_MAX = 995
# What threading keeps of References: its last IDs (the nearest ancestors),
# as public-inbox itself trims, plus In-Reply-To. Threading needs no more,
# and a megabyte of References must cost no more than a short one.
REFERENCES_KEPT = 100


def thread_refs(references: Iterable[str], in_reply_to: str | None,
                own: str | None) -> tuple[str, ...]:
    """The IDs a message refers to, for threading: the last
    `REFERENCES_KEPT` distinct ones of References, then In-Reply-To; never
    the message's own ID. Linear in the length of References."""
    refs = [r for r in references if len(r) <= MESSAGE_ID_MAX]
    kept: dict[str, None] = {}
    for ref in reversed(refs):
        if ref != own:
            kept[ref] = None
            if len(kept) == REFERENCES_KEPT:
                break
    out = list(reversed(kept))
    if in_reply_to and in_reply_to != own and in_reply_to not in kept:
        out.append(in_reply_to)
    return tuple(out)

# -- input ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RawMessage:
    """One message as read from an input: its bytes, where it came from, and
    the identifiers the input layer read from its headers (once)."""

    origin: str
    data: bytes
    message_id: str | None = None
    refs: tuple[str, ...] = ()
    # Why the message cannot be used at all (too large, ...); None if it can.
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageError:
    """A message the pipeline could not use, kept whole for quarantine."""

    origin: str
    message_id: str | None
    reason: str
    raw: bytes


# -- parse: mail ------------------------------------------------------------

_DIFF_START = re.compile(r"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mail:
    """One message with its headers decoded and its text body chosen."""

    message_id: str
    subject: str
    from_name: str
    from_email: str
    date: dt.datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    list_id: str | None
    headers: tuple[tuple[str, str], ...]
    body: str
    charset: str
    raw: bytes
    # (display name, address) of To and Cc, parsed before any decoding.
    to_addrs: tuple[tuple[str, str], ...] = ()
    cc_addrs: tuple[tuple[str, str], ...] = ()

    @property
    def author(self) -> str:
        if self.from_name and self.from_name != self.from_email:
            return format_address(self.from_name, self.from_email)
        return self.from_email

    @property
    def to(self) -> tuple[str, ...]:
        return tuple(format_address(n, a) for n, a in self.to_addrs)

    @property
    def cc(self) -> tuple[str, ...]:
        return tuple(format_address(n, a) for n, a in self.cc_addrs)

    @property
    def has_diff(self) -> bool:
        return _DIFF_START.search(self.body) is not None


_SPECIALS = re.compile(r'[][\\()<>@,:;".]')


def format_address(name: str, addr: str) -> str:
    """`name <addr>`, the name quoted when it holds anything an address
    parser would read as syntax (an "@", a comma...), so that a name can
    never be read back as an address."""
    if not name:
        return addr
    if _SPECIALS.search(name):
        name = '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')
    return "%s <%s>" % (name, addr)


# -- parse: diffs -----------------------------------------------------------


class LineKind(enum.StrEnum):
    CONTEXT = " "
    ADDED = "+"
    REMOVED = "-"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffLine:
    """One line of a hunk, with its line numbers in the old and new file."""

    kind: LineKind
    text: str
    old_no: int | None
    new_no: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Hunk:
    """One hunk of a file's diff: its header's ranges and its lines."""

    old_start: int
    old_len: int
    new_start: int
    new_len: int
    section: str
    lines: tuple[DiffLine, ...]

    @property
    def added(self) -> tuple[DiffLine, ...]:
        return tuple(ln for ln in self.lines if ln.kind is LineKind.ADDED)

    @property
    def removed(self) -> tuple[DiffLine, ...]:
        return tuple(ln for ln in self.lines if ln.kind is LineKind.REMOVED)

    @property
    def header(self) -> str:
        return "@@ -%d,%d +%d,%d @@%s" % (self.old_start, self.old_len, self.new_start,
                                          self.new_len,
                                          " " + self.section if self.section else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class FileDiff:
    """One file's part of a diff: its paths, hunks and blob ids."""

    old_path: str | None
    new_path: str | None
    hunks: tuple[Hunk, ...]
    binary: bool = False
    # The abbreviated blob ids of the `index abc..def` line (None without one):
    # what base inference matches against a kernel repository.
    old_blob: str | None = None
    new_blob: str | None = None

    @property
    def path(self) -> str:
        """The path a reviewer names: the new one, or the old for a deletion."""
        return self.new_path or self.old_path or ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PatchBody:
    """A patch mail's body split into commit message, diffstat and diff."""

    message: str
    diffstat: str
    files: tuple[FileDiff, ...]


# A patch's body left out: what a series carries where only its mail is
# wanted (handed to the rules worker, remembered for carrying trailers).
NO_BODY = PatchBody(message="", diffstat="", files=())


# -- parse: series ----------------------------------------------------------

_PREFIX = re.compile(r"^\s*(\w{2,3}:\s*)*(\[[^\]]*\]\s*)+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """What a patch subject says about its place in a series."""

    text: str
    revision: int
    counter: int
    expected: int
    reply: bool
    resend: bool
    rfc: bool
    patch: bool
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Trailer:
    """A trailer (Reviewed-by, Acked-by, Tested-by, ...) given in a reply."""

    name: str
    value: str
    message_id: str
    author: str
    # The earlier revision the trailer was given to, when b4 carried it over
    # to this patch because the patch is unchanged (same patch-id); None
    # when it was given to this revision.
    revision: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Patch:
    """One patch of a series: its mail, place in the series, body and trailers."""

    index: int
    total: int
    mail: Mail
    subject: str
    body: PatchBody
    trailers: tuple[Trailer, ...] = ()

    @property
    def message_id(self) -> str:
        return self.mail.message_id

    @property
    def files(self) -> tuple[FileDiff, ...]:
        return self.body.files

    @property
    def paths(self) -> tuple[str, ...]:
        seen: list[str] = []
        for fd in self.files:
            if fd.path and fd.path not in seen:
                seen.append(fd.path)
        return tuple(seen)


@dataclass(frozen=True, slots=True, kw_only=True)
class Series:
    """One revision of a series as b4 assembles it: cover, patches, what is missing."""

    message_id: str
    subject: str
    revision: int
    author: str
    author_email: str
    total: int
    cover: Mail | None
    patches: tuple[Patch, ...]
    missing: tuple[int, ...]
    change_id: str | None = None
    thread_id: str = ""
    rfc: bool = False

    @property
    def lineage(self) -> str:
        return lineage_key(self.change_id, self.author_email, self.subject)

    @property
    def messages(self) -> tuple[Mail, ...]:
        head = (self.cover,) if self.cover is not None else ()
        return head + tuple(p.mail for p in self.patches)


def normalize_subject(subject: str) -> str:
    """A subject without Re:, [PATCH vN n/m]-style prefixes or case and spacing."""
    return re.sub(r"\s+", " ", _PREFIX.sub("", subject)).strip().lower()


def lineage_key(change_id: str | None, author_email: str, subject: str) -> str:
    """What links revisions of one series: the change-id b4 puts in the cover
    letter when there is one, else the author's address and the subject with
    its prefixes, revision and counters removed."""
    if change_id:
        return "change-id:" + change_id
    digest = hashlib.sha256(("%s\n%s" % (author_email.lower(), normalize_subject(subject)))
                            .encode("utf-8", "replace")).hexdigest()[:32]
    return "subject:" + digest


class BaseSource(enum.StrEnum):
    """How the base a series was checked against was found."""

    TRAILER = "base-commit"      # the series' own base-commit: trailer
    BLOBS = "index-blobs"        # the pre-image blob ids of its diffs, found in the repository
    VERSION = "version-facts"    # no repository match: the newest kernel version whose
                                 # known facts agree with the hunks' context lines
    NONE = "none"                # nothing to go on: checked on the hunks alone


@dataclass(frozen=True, slots=True, kw_only=True)
class Base:
    """What a series was checked against: a commit of the configured kernel
    repository and/or a kernel version (v6.12), and how that was decided."""

    source: BaseSource
    commit: str | None = None
    version: str | None = None
    detail: str = ""

    @property
    def summary(self) -> str:
        """One line for people: what the findings were checked against."""
        if self.commit:
            what = self.commit[:12] + (" (%s)" % self.version if self.version else "")
            how = {BaseSource.TRAILER: "its base-commit: trailer",
                   BaseSource.BLOBS: "the pre-image blobs of its diffs"}.get(self.source,
                                                                              str(self.source))
            return "%s, from %s" % (what, how)
        if self.version:
            return "none: findings on the hunks, without the base (as of %s)" % self.version
        return "none: findings on the hunks, without the base"

    def as_dict(self) -> dict[str, object]:
        return {"source": str(self.source), "commit": self.commit, "version": self.version,
                "detail": self.detail}


@dataclass(frozen=True, slots=True, kw_only=True)
class TreeSnapshot:
    """Whole files around a series, read from the kernel repository at its
    base: `files[(0, path)]` is a file at the base, `files[(n, path)]` the
    same file after patch n (only where patch n changed it). Pure data, so
    the rules that read whole functions stay free of I/O."""

    base: Base
    files: Mapping[tuple[int, str], str] = field(default_factory=dict)
    # Whether every patch applied; when not, `files` holds the base only
    # (or nothing) and `reason` says why.
    applied: bool = True
    reason: str = ""

    def file_after(self, patch: int, path: str) -> str | None:
        """`path` as it is after patch `patch` (0: at the base); None when it is
        not known, including when the series did not apply. A file a patch
        deletes is "" from that patch on."""
        if not self.applied and patch > 0:
            return None
        best: tuple[int, str] | None = None
        for (idx, p), text in self.files.items():
            if p == path and idx <= patch and (best is None or idx > best[0]):
                best = (idx, text)
        return best[1] if best is not None else None

    def file_before(self, path: str) -> str | None:
        """`path` at the base."""
        return self.files.get((0, path))


@dataclass(frozen=True, slots=True, kw_only=True)
class Thread:
    """One thread: every message in it, the series found, and what failed."""

    messages: tuple[Mail, ...]
    series: tuple[Series, ...]
    errors: tuple[MessageError, ...]


# -- rules ------------------------------------------------------------------


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"
    QUESTION = "question"
    INFO = "info"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {Severity.ERROR: 3, Severity.WARNING: 2, Severity.QUESTION: 1, Severity.INFO: 0}


class Category(enum.StrEnum):
    FIELD_DEFINITION = "field-definition"
    RESERVED_BIT = "reserved-bit"
    HOST_RESTORE = "host-restore"
    SAME_VALUE = "same-value"
    HOT_PATH_LOAD = "hot-path-load"
    BARRIER = "barrier"
    TLB_SYMMETRY = "tlb-symmetry"
    POLARITY = "polarity"
    PMU_OWNERSHIP = "pmu-ownership"
    VHE_NVHE = "vhe-nvhe"
    INIT_ORDER = "init-order"
    EL2_ACCESS = "el2-access"
    PREEMPTION = "preemption"
    REGISTER_WIDTH = "register-width"
    HOST_FLAGS = "host-flags"
    SHADOW_VS_LIVE = "shadow-vs-live"


class Status(enum.StrEnum):
    OPEN = "open"
    RESOLVED_IN_SERIES = "resolved-in-series"
    PRE_EXISTING = "pre-existing"


class RevisionStatus(enum.StrEnum):
    """A finding against the earlier revision of its series: raised for the
    first time, or raised before and still there. (A finding of the earlier
    revision that is gone is a `ResolvedFinding`.)"""

    NEW = "new"
    STILL_PRESENT = "still-present"


_C_COMMENT = re.compile(r"/\*.*?(\*/|$)|//.*$")
_C_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|0[xX][0-9A-Fa-f]+[uUlL]*|[0-9]+[uUlL]*|\S")


def code_tokens(lines: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Evidence as C tokens: comments, spacing, tabs and line breaks gone, so
    re-indented, re-wrapped or re-commented code reads the same."""
    out: list[str] = []
    for line in lines:
        out.extend(_C_TOKEN.findall(_C_COMMENT.sub(" ", line)))
    return tuple(out)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:40]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem a rule found, where it is and how it stands against earlier revisions."""

    rule: str
    category: Category
    severity: Severity
    patch: int
    file: str | None
    line: int | None
    register: str | None
    fields: tuple[str, ...]
    message: str
    evidence: tuple[str, ...]
    status: Status = Status.OPEN
    message_id: str = ""
    # The function the finding is in (None: file scope or commit message).
    function: str | None = None
    # Against the earlier revision of the series, when one is known
    # (bot.revisions): new or still present, and the revision where it was
    # first raised. None when no earlier revision was compared.
    revision_status: RevisionStatus | None = None
    first_seen: int | None = None
    # The file diff and hunk of the patch the finding was made on (None for
    # a finding on the commit message), so a draft quotes it without
    # searching for it again.
    diff: FileDiff | None = field(default=None, compare=False, repr=False)
    hunk: Hunk | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """The finding's identity across revisions of its series: the rule,
        the register and fields, the function and the evidence as C tokens.
        Not the patch (patches are reordered and renumbered), not the line
        (code moves), not the file (code moves between files, as in the 5.9
        split of the hyp code), not the Message-ID."""
        return _digest(self.rule, self.register or "", ",".join(sorted(self.fields)),
                       self.function or "", " ".join(code_tokens(self.evidence)))

    @property
    def key(self) -> str:
        """The finding's identity within one series: rule, patch, file,
        register, fields and evidence. Two findings of one series with the
        same fingerprint (the same line in the VHE and the nVHE switch.c,
        or in two patches) have different keys."""
        return _digest(self.rule, str(self.patch), self.file or "", self.register or "",
                       ",".join(self.fields),
                       "\x1e".join(" ".join(e.split()) for e in self.evidence))

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule, "category": str(self.category),
            "severity": str(self.severity), "patch": self.patch, "file": self.file,
            "line": self.line, "register": self.register, "fields": list(self.fields),
            "message": self.message, "evidence": "\n".join(self.evidence),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    """What the rules said about a series: findings, pre-existing ones and rule errors."""

    findings: tuple[Finding, ...]
    pre_existing: tuple[Finding, ...]
    errors: tuple[str, ...]


# -- revisions --------------------------------------------------------------


class EarlierSource(enum.StrEnum):
    """Where the earlier revision a series was compared with came from."""

    THREAD = "thread"            # an earlier revision in the same thread
    COMPARE_TO = "compare-to"    # given with `bot check --compare-to`
    DATABASE = "database"        # stored by an earlier check or poll


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierFinding:
    """A finding of an earlier revision, as a later one is compared with it."""

    finding: Finding
    # The revision where it was first raised (the earlier revision itself,
    # or one before it that it continues).
    first_seen: int
    # A maintainer dismissed it (or the finding it continues).
    dismissed: bool = False
    # Its stored row, when it came from the database.
    ref: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlierRevision:
    """An earlier revision of a series: its findings, and the mail b4 needs
    to carry its trailers over to the later revision (its patches that
    received trailers and the replies giving them)."""

    message_id: str
    revision: int
    source: EarlierSource
    findings: tuple[EarlierFinding, ...] = ()
    pre_existing: tuple[EarlierFinding, ...] = ()
    messages: tuple[RawMessage, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedFinding:
    """A finding of the earlier revision that the later one no longer has."""

    finding: Finding          # as found on the earlier revision (its patch numbering)
    revision: int             # the earlier revision
    first_seen: int
    resolved_in: int          # the revision that no longer has it
    ref: int | None = None    # its stored row, when it came from the database


@dataclass(frozen=True, slots=True, kw_only=True)
class RevisionComparison:
    """A series compared with its earlier revision: what each of its
    findings continues (by `Finding.key`), and what is gone."""

    earlier: EarlierRevision
    continued: Mapping[str, EarlierFinding] = field(default_factory=dict)
    resolved: tuple[ResolvedFinding, ...] = ()


# -- drafts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """A reply to one patch, rendered from its findings, waiting for a reviewer."""

    series_message_id: str
    patch: int
    in_reply_to: str
    references: tuple[str, ...]
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    # The findings the reply comments on (their fingerprints), so a re-check
    # never drafts the same findings twice.
    fingerprints: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"in_reply_to": self.in_reply_to, "to": list(self.to), "cc": list(self.cc),
                "subject": self.subject, "body": self.body}


# -- results ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SeriesResult:
    """A checked series: the rules' result, drafts and what it was checked against."""

    series: Series
    rules: RuleResult
    drafts: tuple[Draft, ...]
    # Against the earlier revision, when one was known.
    comparison: RevisionComparison | None = None
    # What the series was checked against (None: not decided, as in old callers),
    # whether the rules read whole files (the series applied at base.commit),
    # and when they did not, why they worked on the hunks.
    base: Base | None = None
    whole_files: bool = False
    hunks_reason: str = ""

    @property
    def base_line(self) -> str:
        """The base as one line of output (empty when not decided)."""
        if self.base is None:
            return ""
        if self.base.commit and not self.whole_files:
            return "%s; the series does not apply there: findings made on the hunks" % (
                self.base.summary)
        return self.base.summary

    def base_dict(self) -> dict[str, object] | None:
        if self.base is None:
            return None
        out = self.base.as_dict()
        out.update(summary=self.base_line, whole_files=self.whole_files,
                   reason=self.hunks_reason)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadResult:
    """A thread and the result of each series found in it."""

    thread: Thread
    results: tuple[SeriesResult, ...]

    @property
    def errors(self) -> tuple[MessageError, ...]:
        return self.thread.errors
