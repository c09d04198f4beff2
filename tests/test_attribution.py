"""Which function each line of a hunk side belongs to, right at hunk edges.

Three ways: real linux 6.12 files cut at every line the way `git diff -U3`
cuts them (tests/attribution_windows.py), the cases a reviewer meets named
one by one, and synthetic kernel-style C from hypothesis.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.parse.csource import FuncSpan, attribute, c_functions, find_function, function_spans
from tests.attribution_windows import (
    FILES,
    Cuts,
    c_truth_problems,
    check_file,
    is_asm_file,
    load,
    read,
)

# -- real code ---------------------------------------------------------------


@pytest.mark.parametrize("path", FILES)
def test_real_code_cut_at_every_line(kernel_tree: Path, path: str) -> None:
    text = read(kernel_tree, path)
    cuts = load(path, text)
    if not is_asm_file(path):
        # The truth is tree-sitter-c on the whole file; trust it only where
        # it agrees with the kernel's layout.
        assert c_truth_problems(cuts.lines, cuts.truth) == []
    # The whole file, read from its first line, is the truth.
    assert attribute(cuts.lines, "", path) == cuts.truth
    assert len({n for n in cuts.truth if n}) >= 3
    checked, bad = check_file(path, text, attribute)
    checked_cpp, bad_cpp = check_file(path, text, attribute, cpp=True)
    assert checked > 1000
    wrong = bad + bad_cpp
    assert not wrong, "%d of %d windows attribute lines wrongly:\n%s" % (
        len({(m.first, m.last, m.section) for m in wrong}), checked + checked_cpp,
        "\n".join(str(m) for m in wrong[:40]))


def test_find_function_in_a_whole_file(kernel_tree: Path) -> None:
    path = "arch/arm64/kvm/hyp/vhe/tlb.c"
    text = read(kernel_tree, path)
    lines = text.split("\n")
    first, last = find_function(text, "exit_vmid_context", path) or (0, 0)
    assert lines[first].startswith("static void exit_vmid_context(")
    assert lines[last] == "}"
    assert find_function(text, "no_such_function", path) is None
    host = "arch/arm64/kvm/hyp/nvhe/host.S"
    first, last = find_function(read(kernel_tree, host), "__host_enter", host) or (0, 0)
    assert (first, last) != (0, 0)


# -- named cases -------------------------------------------------------------

# arch/arm64/kvm/hyp/vhe/tlb.c (6.12), the example: a hunk that starts
# in the entry helper and cuts the exit helper off.
TLB = [
    "\t * place before clearing TGE. __load_stage2() already",
    "\t * has an ISB in order to deal with this.",
    "\t */",
    "\t__load_stage2(mmu, mmu->arch);",
    "\tval = read_sysreg(hcr_el2);",
    "\tval &= ~HCR_TGE;",
    "\twrite_sysreg(val, hcr_el2);",
    "\tisb();",
    "}",
    "",
    "static void exit_vmid_context(struct tlb_inv_context *cxt)",
    "{",
    "\t/*",
    "\t * We're done with the TLB operation, let's restore the host's",
    "\t * view of HCR_EL2.",
    "\t */",
    "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);",
]
TLB_SECTION = "static void enter_vmid_context(struct kvm_s2_mmu *mmu,"


def test_exit_helper_cut_off_at_the_end_keeps_its_lines() -> None:
    got = attribute(TLB, TLB_SECTION, "arch/arm64/kvm/hyp/vhe/tlb.c")
    assert got == ["enter_vmid_context"] * 9 + [None] + ["exit_vmid_context"] * 7
    head, tail = function_spans(TLB, TLB_SECTION, "arch/arm64/kvm/hyp/vhe/tlb.c")
    assert head == FuncSpan(name="enter_vmid_context", start=0, end=8, has_start=False,
                            has_end=True, from_section=True)
    assert tail == FuncSpan(name="exit_vmid_context", start=10, end=16, has_start=True,
                            has_end=False)


def test_hunk_starting_in_a_parameter_list() -> None:
    lines = ["\t\t\t       struct tlb_inv_context *cxt)", "{",
             "\tu64 val;", "", "\tlocal_irq_save(cxt->flags);"]
    assert attribute(lines, TLB_SECTION, "a.c") == ["enter_vmid_context"] * 5
    [span] = function_spans(lines, TLB_SECTION, "a.c")
    assert (span.from_section, span.has_end) == (True, False)
    # The same cut of a prototype: the header's line declares, it defines nothing.
    proto = ["\t\t\t       struct tlb_inv_context *cxt);", "void __kvm_flush_vm_context(void);"]
    assert attribute(proto, TLB_SECTION, "a.h") == [None, None]


def test_hunk_starting_in_a_leading_comment_or_attributes() -> None:
    lines = [" * Hypervisor-side counterpart of kvm_vcpu_load_vhe().", " */",
             "static __always_inline", "void __vcpu_load_switch_sysregs(struct kvm_vcpu *vcpu)",
             "{", "\tstruct kvm_cpu_context *guest_ctxt = &vcpu->arch.ctxt;"]
    section = "void __vcpu_put_switch_sysregs(struct kvm_vcpu *vcpu)"
    assert attribute(lines, section, "a.c") == [None, None] + ["__vcpu_load_switch_sysregs"] * 4
    # Cut between the attribute line and the name: the header holds `static inline`.
    assert attribute(lines[3:], "static inline", "a.h") == ["__vcpu_load_switch_sysregs"] * 3


def test_definition_line_last_in_the_hunk() -> None:
    lines = ["\treturn ret;", "}", "", "static void __deactivate_traps(struct kvm_vcpu *vcpu)"]
    section = "static int __activate_traps(struct kvm_vcpu *vcpu)"
    assert attribute(lines, section, "a.c") == ["__activate_traps"] * 2 + [None] + [
        "__deactivate_traps"]
    # Cut inside a multi-line signature; in a header only a static or
    # inline declaration is taken for a definition.
    cut = ["}", "", "static inline void __activate_traps_common(struct kvm_vcpu *vcpu,"]
    assert attribute(cut, section, "a.h")[2] == "__activate_traps_common"
    assert attribute(["}", "", "void __kvm_timer_set_cntvoff(u64 cntvoff,"], section,
                     "a.h")[2] is None


def test_kernel_signature_shapes() -> None:
    text = """\
static DEFINE_PER_CPU(u64, mdcr_el2);
DEFINE_PER_CPU(struct kvm_host_data, kvm_host_data);

static __always_inline
bool __hyp_handle_ptrauth(struct kvm_vcpu *vcpu)
{
\treturn true;
}

void noinstr __used
kvm_nvhe_prepare_backtrace(unsigned long fp,
\t\t\t   unsigned long pc)
{
\t(void)fp;
}

static void __hyp_text __noreturn
__hyp_call_panic(u64 spsr, u64 elr, u64 par) __acquires(lock)
{
\tfor (;;)
\t\t;
}
"""
    assert [(s.name, s.start, s.end, s.has_end) for s in c_functions(text)] == [
        ("__hyp_handle_ptrauth", 3, 7, True),
        ("kvm_nvhe_prepare_backtrace", 9, 14, True),
        ("__hyp_call_panic", 16, 21, True)]


def test_lines_between_functions_belong_to_none() -> None:
    lines = ["}", "", "/* The host's view of MDCR_EL2, saved on load. */",
             "#define MDCR_GUEST_FLAGS_TRACKED_MASK\t(MDCR_EL2_TPMS |\t\\",
             "\t\t\t\t\t MDCR_EL2_TTRF)", "", "void kvm_arm_setup_debug(struct kvm_vcpu *vcpu);",
             "struct kvm_guest_debug_arch {", "\t__u64 dbg_bcr[KVM_ARM_MAX_DBG_REGS];", "};",
             "", "static u64 vcpu_mdcr(void)", "{"]
    got = attribute(lines, "static void save_guest_debug_regs(struct kvm_vcpu *vcpu)", "a.c")
    assert got == ["save_guest_debug_regs"] + [None] * 10 + ["vcpu_mdcr"] * 2


def test_section_naming_a_struct_a_macro_or_a_label() -> None:
    struct = ["\tu64 mdcr_el2;", "\tu64 hcr_el2;", "};", "", "static void f(void)", "{"]
    assert attribute(struct, "struct kvm_host_data {", "a.h") == [None] * 4 + ["f"] * 2
    per_cpu = ["", "static void __activate_traps(struct kvm_vcpu *vcpu)", "{"]
    assert attribute(per_cpu, "DEFINE_PER_CPU(unsigned long, kvm_hyp_vector);", "a.c") == [
        None, "__activate_traps", "__activate_traps"]
    # git's default rule heads a hunk with a goto label: inside a function
    # the text does not name.
    body = ["\tmutex_unlock(&its->cmd_lock);", "}", "", "static int f(void)", "{"]
    assert attribute(body, "out:", "a.c") == [None, None, None, "f", "f"]
    spans = function_spans(body, "out:", "a.c")
    assert (spans[0].name, spans[0].end, spans[0].from_section) == ("", 1, False)


def test_ifdef_blocks_and_continuation_lines() -> None:
    lines = ["}", "", "#ifdef CONFIG_KVM_ARM_PMU", "static void __pmu_switch_to_guest(void)",
             "{", "#ifdef CONFIG_X", "\tif (x) {", "#else", "\tif (y) {", "#endif",
             "\t\tz();", "\t}", "}", "#else", "static inline void __pmu_switch_to_guest(void) {}",
             "#endif", "", "#define __debug_save_spe()\t\t\t\\", "\tdo {\t\t\t\t\\",
             "\t\tfoo();\t\t\t\\", "\t} while (0)", "", "static void g(void)", "{"]
    got = attribute(lines, "static void f(void)", "a.c")
    assert got == (["f"] + [None] * 2 + ["__pmu_switch_to_guest"] * 10 + [None]
                   + ["__pmu_switch_to_guest"] + [None] * 7 + ["g"] * 2)
    # A hunk that starts inside a macro's continuation lines.
    macro = ["\t\tfoo();\t\t\t\\", "\t} while (0)", "", "static void g(void)", "{"]
    assert attribute(macro, "static void f(void)", "a.c") == [None] * 3 + ["g"] * 2


def test_hunk_ending_inside_nested_blocks() -> None:
    lines = ["", "static void __sysreg_restore(struct kvm_cpu_context *ctxt)", "{",
             "\tif (has_vhe()) {", "\t\tif (x) {", "\t\t\twrite_sysreg(1, hcr_el2);"]
    [span] = function_spans(lines, "static void f(void)", "a.c")
    assert (span.name, span.start, span.end, span.has_end) == ("__sysreg_restore", 1, 5, False)


def test_assembly_cut_at_either_end() -> None:
    path = "arch/arm64/kvm/hyp/nvhe/host.S"
    lines = ["\tmov\tx29, x0", "\tb\t__host_enter_restore_full", "SYM_FUNC_END(__host_enter)",
             "", "SYM_FUNC_START(__hyp_do_panic)", "\tmsr\tspsr_el2, lr"]
    # The end marker names the block the hunk starts in, whatever the header.
    for section in ("SYM_FUNC_START(__host_enter)", "__host_enter_for_panic:", ""):
        assert attribute(lines, section, path) == ["__host_enter"] * 3 + [None] + [
            "__hyp_do_panic"] * 2
    middle = ["\tldp\tx8, x9,   [x29, #CPU_XREG_OFFSET(8)]"]
    assert attribute(middle, "SYM_FUNC_START(__host_exit)", path) == ["__host_exit"]
    # A label is not a function; nothing names the block here.
    assert attribute(middle, "__host_enter_for_panic:", path) == [None]
    # An assembler header: `.macro` blocks.
    macro = ["\tmsr\tmdcr_el2, x2", ".endm", "", ".macro __init_el2_lor", "\tmrs\tx1, id"]
    assert attribute(macro, "", "arch/arm64/include/asm/el2_setup.h") == [None] * 3 + [
        "__init_el2_lor"] * 2


def test_empty_side_and_other_files() -> None:
    assert attribute([], "static void f(void)", "a.c") == []
    assert function_spans([], "", "a.S") == []
    assert attribute(["x = 1"], "f(", "Makefile") == [None]


# -- synthetic C -------------------------------------------------------------

_NAMES = st.integers(min_value=0, max_value=10**6).map(lambda n: "fn_%d" % n)
_STATEMENTS = st.sampled_from([
    ["\tval = read_sysreg(hcr_el2);"],
    ["\twrite_sysreg(val,", "\t\t     hcr_el2);"],
    ["\tif (has_vhe()) {", "\t\tisb();", "\t}"],
    ["\tif (a &&", "\t    b) {", "\t\tif (c) {", "\t\t\tx();", "\t\t}", "\t} else {",
     "\t\ty();", "\t}"],
    ["\t/* braces in a comment { */"],
    ["\t/*", "\t * A comment over lines: }", "\t */"],
    ["\tpr_info(\"{%d}\\n\", '{');"],
    ["out:", "\treturn;"],
    ["#ifdef CONFIG_ARM64_PTR_AUTH", "\tptrauth();", "#endif"],
    ["\tdo {", "\t\tcpu_relax();", "\t} while (0);"],
    [""],
])
_PARAMS = st.sampled_from([["void)"], ["struct kvm_vcpu *vcpu)"],
                           ["struct kvm_s2_mmu *mmu,", "\t\t\t       struct tlb_inv_context *cxt)"]])
_ATTRS = st.sampled_from(["static", "static inline", "static __always_inline", "",
                          "static noinstr", "void __hyp_text"])
_HEADER_ATTRS = st.sampled_from(["static inline", "static __always_inline"])
_TYPES = st.sampled_from(["void", "u64", "bool", "struct kvm_vcpu *"])


@st.composite
def _function(draw: st.DrawFn, header: bool) -> list[tuple[str, str | None]]:
    name = draw(_NAMES)
    attrs, type_ = draw(_HEADER_ATTRS if header else _ATTRS), draw(_TYPES)
    params = draw(_PARAMS)
    decl = "%s%s%s(%s" % (type_, "" if type_.endswith("*") else " ", name, params[0])
    shape = draw(st.sampled_from(["one line", "attributes above", "type above"]))
    if shape == "one line" or not attrs:
        head = [(attrs + " " + decl).strip()]
    elif shape == "attributes above":
        head = [attrs, decl]
    else:   # static void\nname(...)
        head = ["%s %s" % (attrs, type_), "%s(%s" % (name, params[0])]
    out = head + params[1:] + ["{"]
    for stmt in draw(st.lists(_STATEMENTS, max_size=5)):
        out.extend(stmt)
    out.append("}")
    return [(line, name) for line in out]


_FILE_LEVEL = st.sampled_from([
    ["/*", " * A comment between functions: {", " */"],
    ["// SPDX-License-Identifier: GPL-2.0-only"],
    ["#define HCR_HOST_FLAGS\t(HCR_RW | HCR_API)"],
    ["#define __debug_save(x)\t\t\\", "\tdo {\t\t\t\\", "\t\tsave(x);\t\\", "\t} while (0)"],
    ["void __kvm_flush_vm_context(void);"],
    ["struct tlb_inv_context {", "\tunsigned long\tflags;", "\tu64\t\ttcr;", "};"],
    ["DEFINE_PER_CPU(struct kvm_host_data, kvm_host_data);"],
    ["static const u8 table[] = {", "\t[0] = 1,", "};"],
    ["#ifdef CONFIG_KVM"],
    ["#endif"],
])


# A declaration cut before its `;` or `{` is read as a definition in a .c
# file and as a prototype in a header unless static or inline, as kernel
# files have it: multi-line prototypes only in headers, where definitions
# are static inline.
_PROTOTYPE = ["int kvm_set_ipa_limit(struct kvm *kvm,", "\t\t      unsigned long x);"]


@st.composite
def _source(draw: st.DrawFn, header: bool) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    file_level = _FILE_LEVEL | st.just(_PROTOTYPE) if header else _FILE_LEVEL
    items = draw(st.lists(st.one_of(_function(header), file_level.map(
        lambda lines: [(line, None) for line in lines])), min_size=1, max_size=8))
    for item in items:
        out.extend(item)
        out.append(("", None))
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.booleans(), data=st.data())
def test_synthetic_c_cut_anywhere(header: bool, data: st.DataObject) -> None:
    source = data.draw(_source(header))
    path = "synthetic.h" if header else "synthetic.c"
    lines = [line for line, _ in source]
    truth = [name for _, name in source]
    # Names are drawn independently: two functions may share one, as two
    # #if branches do; the checks go by definition, not by name.
    cuts = Cuts(path, lines, truth)
    assert attribute(lines, "", path) == truth
    first = data.draw(st.integers(min_value=0, max_value=len(lines) - 1))
    last = data.draw(st.integers(min_value=first, max_value=len(lines) - 1))
    for cpp in (False, True):
        assert cuts.check(first, last, attribute, cpp=cpp) == []


_CODE_CHARS = st.sampled_from(list("{}()[];:=,*/\\#\"' \tabc_\n") + ["/*", "*/", "//", "#if",
                                                                   "#endif", ".macro", ".endm",
                                                                   "SYM_FUNC_START(x)",
                                                                   "SYM_FUNC_END(x)"])


@settings(max_examples=300, deadline=None)
@given(text=st.lists(_CODE_CHARS, max_size=120).map("".join),
       section=st.sampled_from(["", "static void f(int a,", "out:", "struct s {",
                                "SYM_FUNC_START(x)", "static inline"]),
       path=st.sampled_from(["a.c", "a.h", "a.S"]))
def test_any_text_gets_well_formed_spans(text: str, section: str, path: str) -> None:
    lines = text.split("\n")
    spans = function_spans(lines, section, path)
    end = -1
    for span in spans:
        assert end < span.start <= span.end < len(lines)
        assert span.has_start or span.start == 0
        end = span.end
    assert len(attribute(lines, section, path)) == len(lines)
