"""One buggy case and one neutral neighbour per bug kind, as test fixtures.

`write_fixtures` writes the two mails of each kind into a directory with a
`cases.toml` describing them (kind, expectation, categories, anchors, the
generator's justification, the 6.12 function) and, from the outcomes just
measured, `known_miss = true` where the current rules engine gets the case
wrong, so tests/test_rules_kinds.py can mark it xfail(strict=True) and fail
as soon as the engine gets it right.
"""

from __future__ import annotations

import json
from pathlib import Path

from mutate.cases import KINDS, Case
from mutate.measure import Outcome

# Kinds whose fixtures are also checked with a kernel tree in the tests.
WITH_TREE = frozenset("cdgk")

# The generator each kind's fixture pair is taken from (first case of each):
# the buggy shape most typical of the kind, and its section-6 neighbour.
PREFERRED = {
    "a": ("new-field-wrong-position", "field-alias"),
    "b": ("res0-mask-drift", "res0-mask-reformat"),
    "c": ("host-write-dropped", "restore-into-helper"),
    "d": ("saved-host-source-changed", "same-host-value-another-way"),
    "e": ("host-constant-to-load", "constant-stays-constant"),
    "f": ("isb-dropped", "isb-kept-between"),
    "g": ("switch-back-drops-restore", "switch-changed-symmetrically"),
    "h": ("clear-under-trap-intent", "polarity-same-effect"),
    "i": ("ownership-lost-or-forced", "ownership-same-bits"),
    "j": ("is-kernel-in-hyp-mode-as-vhe", "one-configuration-only-code"),
    "k": ("computed-after-first-use", "computed-earlier"),
    "l": ("el2-register-from-el1", "el2-access-at-el2"),
    "m": ("preemption-protection-dropped", "host-copy-read-protected"),
    "n": ("narrowed-storage", "widened-everywhere"),
    "o": ("host-value-gains-bit", "host-value-consistent"),
    "p": ("live-for-shadow", "shadow-live-same"),
}

_HEADER = """\
# One patch per bug kind of REVIEW-GUIDE section 6 that must trigger, and
# one semantics-preserving neighbour that must stay quiet (no open error or
# warning finding), generated from linux 6.12 by bench/mutations.py
# --write-fixtures (seed %d); read by tests/test_rules_kinds.py.
#
# categories: finding categories that count for the kind; anchors: [path,
# new-file line] places a finding must be within 3 lines of; function: the
# 6.12 function (or file) the case comes from; tree: also checked with a
# kernel tree. known_miss (and known_miss_tree): the rules engine of the
# time gets it wrong; the test is xfail(strict=True) until the engine gets
# it right, then the key must go.
"""


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _pick(cases: list[Case], kind: str) -> tuple[Case | None, Case | None]:
    bug_gen, quiet_gen = PREFERRED[kind]
    buggy = next((c for c in cases if c.kind == kind and c.generator == bug_gen), None)
    neutral = next((c for c in cases if c.kind == kind and c.generator == quiet_gen), None)
    return buggy, neutral


def write_fixtures(directory: Path, cases: list[Case], mails: dict[str, str],
                   plain: list[Outcome], tree: list[Outcome] | None, seed: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    by_id = {o.case.id: o for o in plain}
    by_id_tree = {o.case.id: o for o in tree or []}
    out = [_HEADER % seed]
    for kind in KINDS:
        for case in _pick(cases, kind):
            if case is None:
                continue
            expect = "trigger" if case.buggy else "quiet"
            name = "%s-%s-%s.patch" % (kind, expect, case.generator)
            (directory / name).write_text(mails[case.id])
            outcome = by_id[case.id]
            wrong = not outcome.caught if case.buggy else bool(outcome.loud)
            out.append("\n[[case]]\n")
            out.append("kind = %s\n" % _toml_str(kind))
            out.append("expect = %s\n" % _toml_str(expect))
            out.append("file = %s\n" % _toml_str(name))
            out.append("function = %s\n" % _toml_str(case.function))
            out.append("generator = %s\n" % _toml_str(case.generator))
            if case.buggy:
                out.append("categories = [%s]\n" % ", ".join(
                    _toml_str(c) for c in sorted(case.categories)))
                out.append("anchors = [%s]\n" % ", ".join(
                    "[%s, %d]" % (_toml_str(p), line) for p, line in case.anchors))
            out.append("justification = %s\n" % _toml_str(case.justification))
            if kind in WITH_TREE:
                out.append("tree = true\n")
            if wrong:
                out.append("known_miss = true\n")
            if kind in WITH_TREE and case.id in by_id_tree:
                t = by_id_tree[case.id]
                if (not t.caught) if case.buggy else bool(t.loud):
                    out.append("known_miss_tree = true\n")
    (directory / "cases.toml").write_text("".join(out))
