"""The value mechanisms of the rules engine on real linux 6.12 code.

Each directory of tests/data/ below holds patches generated from the 6.12
sources by bench/mutations.py and a cases.toml saying, for each, where it
comes from and why it must trigger (an open finding of the rule within 3
lines of an anchor) or stay quiet (no open error or warning of any rule);
each is checked with the kernel tree and, where cases.toml says so,
without it:

- initorder (init-order, bot/rules/initorder.py): a stored value computed
  in a later stage than its first use, a read before the computation, a
  consumer of the whole object seeing less of it;
- hostvalues (host-flags, bot/rules/hostvalues.py): one host
  configuration's runtime HCR_EL2 gains a bit the others lack;
- roundtrip (tlb-symmetry, bot/rules/roundtrip.py): what the TLB switch
  helpers leave behind as a pair;
- syncorder (barrier, bot/rules/syncorder.py): a barrier taken from
  between the operations it separated;
- ownership (pmu-ownership, bot/rules/ownership.py, featureguard.py): the
  host's HPMN/E2PB/E2TB through every value that carries it, feature bits
  set with fewer checks around them;
- sides (vhe-nvhe, bot/rules/sides.py): one configuration's switch path
  changes the order of what it does;
- preemption (preemption, bot/rules/lifecycle.py): a per-CPU host copy
  read reached, through calls, from where preemption is enabled;
- width (register-width, bot/rules/width.py): a value cut to 32 bits by a
  narrow local, a cast, lower_32_bits(), or a narrow per-CPU variable;
- putback (host-restore, bot/rules/putback.py, roundtrip.py with kvm.toml
  [[round_trips]]): code that changes HCR_EL2 for a while no longer puts
  back what it found;
- reserved (reserved-bit, bot/rules/definitions.py): a RES0 mask that stops
  calling reserved bits reserved; a RES0 bit reaching the register through a
  local built on several paths, or an assembler `orr`;
- hotpath (hot-path-load, kvm.toml [ops] loads/patched): a switch-path
  helper that now tests the vcpu's flags or features;
- asmbarrier (barrier, bot/rules/regime.py, syncorder.py): the isb after an E2H change
  in an assembler macro of a header, or moved past lines two hunks leave out;
  an ISR_EL1 read right after a dsb with no isb between;
- el2test (vhe-nvhe, bot/rules/paths.py, redirect.py): is_kernel_in_hyp_mode()
  as a VHE test in a helper the hunk shows by its definition only; an EL1
  register the hyp code reaches through the encoding E2H redirects;
- neverset (polarity, bot/rules/neverset.py): a clear of bits no store into
  the storage sets;
- onepath, onepathop (init-order, vhe-nvhe: bot/rules/onepath.py,
  configreach.py): state or guest TLB maintenance put on a path only one
  configuration runs (nVHE's hyp init), that the other relies on;
- e2honly (vhe-nvhe, bot/rules/e2honly.py): PSTATE.PAN written by code only
  the nVHE hyp runs, where HCR_EL2.E2H is clear;
- keepmask (polarity, bot/rules/keepmask.py): a keep-mask on a register
  value where the code says its bits are the ones to clear;
- entrystate (polarity, bot/rules/entrystate.py): the new PSTATE on
  exception entry set from an SCTLR field with the opposite polarity;
- kconfigsym (register-width, bot/rules/kconfigsym.py): a Kconfig test
  without CONFIG_ picking a half of 64-bit register storage;
- walkorder, syncneed, errseq (barrier, bot/rules/walkorder.py, syncneed.py,
  errseq.py with kvm.toml's ordering facts): stage-1 walks turned back on
  under the speculative-AT erratum before the TTBRs or stage 2; an isb after
  a write only EL1/EL0 see; an erratum's barrier taken off an exception return.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.data import Finding
from bot.errors import ConfigError
from bot.regmodel.facts import read_facts
from bot.rules.bits import Bits
from tests.conftest import DATA
from tests.rules_support import rules_ctx  # noqa: F401  (fixture)
from tests.test_rules_kinds import _findings, linux_repo  # noqa: F401  (fixture)
from tests.value_cases import assert_case, load_cases, tree_findings

# directory -> (rule, what else every finding near an anchor must show)
DIRS: dict[str, tuple[str, Callable[[Finding], bool]]] = {
    "initorder": ("init-order", lambda f: True),
    "hostvalues": ("host-flags", lambda f: f.message.endswith("?") and bool(f.fields)),
    "roundtrip": ("tlb-symmetry", lambda f: "undo" in f.message),
    "syncorder": ("barrier", lambda f: "no longer sits between" in f.message),
    "ownership": ("pmu-ownership", lambda f: bool(f.fields)),
    "sides": ("vhe-nvhe", lambda f: "leaves the" in f.message),
    "preemption": ("preemption", lambda f: f.message.endswith("?")),
    "width": ("register-width", lambda f: "64-bit register" in f.message),
    "putback": ("host-restore", lambda f: "_EL2" in f.message),
    "reserved": ("reserved-bit", lambda f: "reserve" in f.message),
    "hotpath": ("hot-path-load", lambda f: "loads" in f.message),
    "asmbarrier": ("barrier", lambda f: "isb" in f.message),
    "el2test": ("vhe-nvhe", lambda f: "has_vhe()" in f.message or "_EL12" in f.message),
    "neverset": ("polarity", lambda f: "changes nothing" in f.message),
    "guestregime": ("shadow-vs-live", lambda f: "stage-2" in f.message),
    "capmerge": ("vhe-nvhe", lambda f: "configuration test" in f.message),
    "loadedcopy": ("shadow-vs-live", lambda f: "vcpu load" in f.message),
    "featurecost": ("hot-path-load", lambda f: "every VM" in f.message),
    "keepmask": ("polarity", lambda f: "keeps only" in f.message and f.message.endswith("?")),
    "entrystate": ("polarity", lambda f: "exception entry" in f.message),
    "kconfigsym": ("register-width", lambda f: "CONFIG_" in f.message),
    "exitwindow": ("shadow-vs-live", lambda f: "ELR_EL2" in f.message),
    "onepath": ("init-order", lambda f: "path only" in f.message),
    "onepathop": ("vhe-nvhe", lambda f: "same CPUs" in f.message),
    "e2honly": ("vhe-nvhe", lambda f: "HCR_EL2.E2H is 1" in f.message),
    "walkorder": ("barrier", lambda f: "back on" in f.message or "no longer sits" in f.message),
    "syncneed": ("barrier", lambda f: f.message.startswith("What needs this isb?")),
    "errseq": ("barrier", lambda f: "1508412" in f.message),
}
CASES = [(d, c) for d in DIRS for c in load_cases(DATA / d)]
IDS = ["%s/%s" % (d, c["file"].removesuffix(".patch")) for d, c in CASES]
PLAIN = [(d, c) for d, c in CASES if c.get("without_tree")]
PLAIN_IDS = ["%s/%s" % (d, c["file"].removesuffix(".patch")) for d, c in PLAIN]


@pytest.mark.parametrize("directory", sorted(DIRS))
def test_every_fixture_is_listed(directory: str) -> None:
    listed = {c["file"] for d, c in CASES if d == directory}
    assert listed == {p.name for p in (DATA / directory).glob("*.patch")}
    assert {c["expect"] for d, c in CASES if d == directory} == {"trigger", "quiet"}


def _check(directory: str, case: dict[str, Any], found: list[Finding]) -> None:
    rule, shows = DIRS[directory]
    near = assert_case(case, found, rule)
    assert all(shows(f) for f in near), [f.message for f in near]


@pytest.mark.parametrize("directory, case", CASES, ids=IDS)
def test_with_tree(directory: str, case: dict[str, Any], linux_repo: Path,
                   tmp_path: Path) -> None:
    _check(directory, case, tree_findings(DATA / directory / case["file"], linux_repo,
                                          tmp_path))


@pytest.mark.parametrize("directory, case", PLAIN, ids=PLAIN_IDS)
def test_without_tree(directory: str, case: dict[str, Any], rules_ctx) -> None:  # type: ignore[no-untyped-def]
    _check(directory, case, _findings(DATA / directory / case["file"], rules_ctx))


def test_a_shift_by_nothing_keeps_where_bits_come_from() -> None:
    x = Bits.source("host-copy:host-copy.mdcr_el2")
    assert (x & Bits.const(31)).shr(0) == x & Bits.const(31)
    assert x.shl(0) == x
    assert x.shr(1).srcs == ()


@pytest.mark.parametrize("section, problem", [
    ({"stages": ["a", "b"], "stage_of": {"f": "c"}}, "lifecycle.stage_of.f: unknown stage 'c'"),
    ({"stages": ["a"], "first_use": {"nowhere": "a"}}, "lifecycle.first_use.nowhere: unknown "
     "storage"),
    ({"stages": ["a"], "defines": {"f": ["x.y"]}}, "lifecycle.defines.f: unknown storage"),
    ({"stages": ["a"], "order": []}, "lifecycle.order: unknown key"),
])
def test_lifecycle_facts_name_the_bad_key(section: dict[str, Any], problem: str) -> None:
    raw = {"lifecycle": dict(section, source="s")}
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        read_facts(raw, {"s": "a source"}, "kvm.toml")


@pytest.mark.parametrize("raw, problem", [
    ({"regvalues": {"source": "s", "exprs": [{"match": "^x$"}]}},
     "regvalues.exprs[0].register: missing"),
    ({"regvalues": {"source": "s", "writers": {"w": {"value": 1}}}},
     "regvalues.writers.w.register: give either"),
    ({"regvalues": {"source": "s", "on_entry": [{"register": "R", "field": "F", "bit": 64,
                                                 "when": 0, "target": "T", "sets": "S",
                                                 "set_bit": 1, "source": "s"}]}},
     "regvalues.on_entry[0].bit: expected an integer from 0 to 63"),
    ({"kconfig": {"source": "s", "symbols": ["CONFIG_KVM"]}}, "kconfig.symbols: 'CONFIG_KVM'"),
])
def test_register_value_facts_name_the_bad_key(raw: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(".", r"\.")
                       .replace("[", r"\[").replace("]", r"\]")):
        read_facts(raw, {"s": "a source"}, "kvm.toml")


def test_register_values_by_their_expressions(rules_ctx) -> None:  # type: ignore[no-untyped-def]
    rv = rules_ctx.regmodel.facts.regvalues
    assert rv.register_of("*vcpu_cpsr(vcpu)") == "PSTATE"
    assert rv.register_of("vcpu_cp15(vcpu,c1_SCTLR)") == "SCTLR_ELx"
    assert rv.register_of("__vcpu_read_sys_reg(vcpu,SCTLR_EL2)") == "SCTLR_ELx"
    assert rv.register_of("vcpu_cp15(vcpu,c2_TTBCR)") == "TCR_EL1"
    assert rv.register_of("vcpu->arch.hcr_el2") is None
    assert rv.drop_word("overlap") == "overlap" and rv.drop_word("PSR_AA32_IT_MASK") is None


_LATE = {"register": "ELR_EL2", "copy": r"\*vcpu_pc\(\w+\)", "live": r"read_sysreg_elr\(\)",
         "saved_by": "save", "source": "s"}


@pytest.mark.parametrize("item, problem", [
    (dict(_LATE, copy="(unclosed"), "late_saved[0].copy: not a regular expression"),
    (dict(_LATE, only_in="fixup_guest_exit"), "late_saved[0].only_in: expected an array"),
    (dict(_LATE, spelling=["x"]), "late_saved[0].spelling: unknown key"),
    ({k: v for k, v in _LATE.items() if k != "saved_by"}, "late_saved[0].saved_by: missing"),
])
def test_late_saved_facts_name_the_bad_key(item: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(problem)):
        read_facts({"late_saved": [item]}, {"s": "a source"}, "kvm.toml")


def test_exit_handlers_match_names_and_prefixes() -> None:
    facts = read_facts({"exit_window": {"handlers": ["kvm_hyp_handle_*", "handle_tx2_tvm"]}},
                       {}, "kvm.toml")
    assert facts.in_exit_handlers("kvm_hyp_handle_mops")
    assert facts.in_exit_handlers("handle_tx2_tvm")
    assert not facts.in_exit_handlers("handle_tx2_tvm_more")
    assert not facts.in_exit_handlers("kvm_hyp_handles")
