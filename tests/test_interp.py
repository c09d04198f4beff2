"""The value model under the rules: C parsed from real 6.12 code, register
values bit by bit, and the interpreter's traces per execution context."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.parse.csource import c_functions
from bot.regmodel import load_model
from bot.regmodel.evaluate import Evaluator
from bot.regmodel.facts import Ctx
from bot.rules.bits import Bits, SourceKind, source_kind
from bot.rules.cexpr import Assign, Binary, Call, Cast, Member, Unary, expr_from_text, expr_text
from bot.rules.cstmt import Decl, ExprStmt, If, walk
from bot.rules.interp import Interpreter
from bot.rules.stmtparse import function_from_lines
from bot.rules.trace import Ev

HYP = "arch/arm64/kvm/hyp"
TGE = 1 << 27
E2H = 1 << 34


def functions(tree: Path, *paths: str) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for path in paths:
        text = (tree / path).read_text()
        lines = text.split("\n")
        for span in c_functions(text):
            fn = function_from_lines(span.name, path,
                                     [(i + 1, lines[i]) for i in range(span.start, span.end + 1)],
                                     has_start=span.has_start, has_end=span.has_end)
            out.setdefault(span.name, []).append(fn)
    return out


def trace(tree: Path, name: str, path: str, *paths: str, irq_off: bool | None = False):  # type: ignore[no-untyped-def]
    model = load_model()
    fns = functions(tree, path, *paths)
    fn = next(f for f in fns[name] if f.path == path)
    return Interpreter(model.facts, Evaluator(model), fns).run(fn, irq_off=irq_off)


# -- expressions and statements ----------------------------------------------------


@pytest.mark.parametrize("text, shape", [
    ("val &= ~HCR_TGE", Assign),
    ("(u32)read_sysreg(mdcr_el2)", Cast),
    ("vcpu->arch.hcr_el2", Member),
    ("*host_data_ptr(host_debug_state.mdcr_el2)", Unary),
    ("hcr | (__vcpu_sys_reg(vcpu, HCR_EL2) & ~NV_HCR_GUEST_EXCLUDE)", Binary),
    ("write_sysreg(this_cpu_ptr(&kvm_init_params)->hcr_el2, hcr_el2)", Call),
])
def test_kernel_expressions_parse(text: str, shape: type) -> None:
    expr = expr_from_text(text)
    assert isinstance(expr, shape)
    assert expr_text(expr).replace(" ", "") == text.replace(" ", "")


def test_a_fragment_that_starts_inside_a_comment_and_a_block_parses() -> None:
    lines = [(10, "\t * the guest TLBs, flip TGE."), (11, "\t */"),
             (12, "\tval = read_sysreg(hcr_el2);"), (13, "\tval &= ~HCR_TGE;"),
             (14, "\twrite_sysreg(val, hcr_el2);"), (15, "\t}"), (16, "\tisb();")]
    fn = function_from_lines("enter_vmid_context", "x.c", lines, has_start=False,
                             has_end=False)
    stmts = [s for s in walk(fn.body) if isinstance(s, ExprStmt)]
    assert [s.line for s in stmts] == [12, 13, 14, 16]
    assert not fn.complete


def test_every_statement_of_the_6_12_switch_code_parses(kernel_tree: Path) -> None:
    """No statement of the world switch is left unparsed (Unknown)."""
    fns = functions(kernel_tree, f"{HYP}/vhe/switch.c", f"{HYP}/nvhe/switch.c",
                    f"{HYP}/include/hyp/switch.h", f"{HYP}/vhe/tlb.c", f"{HYP}/nvhe/tlb.c")
    count = unknown = 0
    for fn in (f for group in fns.values() for f in group):
        for stmt in walk(fn.body):
            if isinstance(stmt, ExprStmt):
                count += 1
                unknown += type(stmt.expr).__name__ == "Unknown"
            elif isinstance(stmt, (Decl, If)):
                count += 1
    assert count > 400 and unknown == 0


# -- bit values ----------------------------------------------------------------------


def test_bits_follow_read_modify_write() -> None:
    live = Bits.source("live:HCR_EL2")
    cleared = live & ~Bits.const(TGE)
    assert cleared.zeros == TGE and cleared.source_at(27) is None
    assert cleared.source_at(0) == "live:HCR_EL2"
    assert (cleared | Bits.const(TGE)).ones == TGE
    forced = Bits.const(0x1f) & live
    assert forced.src_mask == 0x1f and forced.zeros == ~0x1f & ((1 << 64) - 1)
    assert live.join(Bits.const(0)).unknown_mask == (1 << 64) - 1
    assert not live.differs(Bits.source("live:HCR_EL2"))
    assert live.differs(Bits.source("vcpu:vcpu.hcr_el2")) == (1 << 64) - 1
    assert source_kind("percpu:percpu.init_params.hcr_el2") is SourceKind.PERCPU


# -- traces of real 6.12 functions ---------------------------------------------------


def test_nvhe_exit_restores_the_per_cpu_host_values(kernel_tree: Path) -> None:
    t = trace(kernel_tree, "__deactivate_traps", f"{HYP}/nvhe/switch.c",
              f"{HYP}/include/hyp/switch.h", irq_off=True)
    for ctx in (Ctx.NVHE_HYP, Ctx.PKVM_HYP, Ctx.HVHE_HYP):
        hcr = t.written(ctx, "HCR_EL2")
        mdcr = t.written(ctx, "MDCR_EL2")
        assert hcr is not None and hcr.always
        assert hcr.value.sources() == ("percpu:percpu.init_params.hcr_el2",)
        assert mdcr is not None and mdcr.value.sources() == ("host-copy:host-copy.mdcr_el2",)
    assert t.written(Ctx.VHE, "HCR_EL2") is None  # nVHE hyp code never runs on VHE


def test_vhe_exit_writes_the_constant_host_flags(kernel_tree: Path) -> None:
    t = trace(kernel_tree, "__deactivate_traps", f"{HYP}/vhe/switch.c",
              f"{HYP}/include/hyp/switch.h", irq_off=True)
    hcr = t.written(Ctx.VHE, "HCR_EL2")
    assert hcr is not None and hcr.value.is_const
    assert hcr.value.ones & (TGE | E2H) == TGE | E2H


def test_the_tlb_switch_clears_tge_with_interrupts_masked_then_synchronises(
        kernel_tree: Path) -> None:
    t = trace(kernel_tree, "enter_vmid_context", f"{HYP}/vhe/tlb.c")
    writes = [e for e in t.events if e.kind is Ev.WRITE and e.register == "HCR_EL2"]
    assert len(writes) == 1 and writes[0].value is not None
    assert writes[0].value.zeros & TGE and writes[0].irq_off is True
    after = t.events[t.events.index(writes[0]) + 1:]
    assert any(e.kind is Ev.ISB and e.always for e in after)


def test_a_configuration_test_splits_the_paths(kernel_tree: Path) -> None:
    """__deactivate_cptr_traps() writes CPACR_EL1 under hVHE and CPTR_EL2
    otherwise (has_hvhe() in kvm.toml's guards)."""
    t = trace(kernel_tree, "__deactivate_traps", f"{HYP}/nvhe/switch.c",
              f"{HYP}/include/hyp/switch.h", irq_off=True)
    cpacr = {c for e in t.events if e.register == "CPACR_EL1" for c in e.contexts}
    cptr = {c for e in t.events if e.register == "CPTR_EL2" for c in e.contexts}
    assert cpacr == {Ctx.HVHE_HYP}
    assert cptr == {Ctx.NVHE_HYP, Ctx.PKVM_HYP}


def test_an_errata_alternative_isb_is_not_unconditional(kernel_tree: Path) -> None:
    t = trace(kernel_tree, "__deactivate_traps", f"{HYP}/vhe/switch.c",
              f"{HYP}/include/hyp/switch.h", irq_off=True)
    kinds = [e.kind for e in t.events if e.kind in (Ev.ISB, Ev.ISB_ERRATA)]
    assert Ev.ISB_ERRATA in kinds


# -- the register model's one evaluator ------------------------------------------------


def test_the_evaluator_knows_each_era_s_names_and_a_patch_s_own_macros() -> None:
    model = load_model()
    old = Evaluator(model)              # kvm_arm.h's hand-written MDCR_EL2 masks
    new = Evaluator(model, "v6.14")     # tools/sysreg's generated ones
    assert old.value("MDCR_EL2_E2PB_MASK << MDCR_EL2_E2PB_SHIFT") == 0x3000
    assert new.value("MDCR_EL2_E2PB_MASK") == 0x3000
    assert old.value("HCR_HOST_VHE_FLAGS") == (1 << 31) | TGE | E2H
    assert old.value("FIELD_PREP(MDCR_EL2_HPMN_MASK, 3) | BIT_ULL(27)") == 3 | (1 << 27)
    assert old.value("vcpu->arch.hcr_el2") is None
    patched = old.with_defines("#define HCR_HOST_VHE_FLAGS (HCR_RW | HCR_TGE | HCR_E2H | HCR_TID2)")
    assert patched.value("HCR_HOST_VHE_FLAGS") == old.value("HCR_HOST_VHE_FLAGS") | (1 << 17)


def test_kvm_facts_place_guard_and_name_storage() -> None:
    facts = load_model().facts
    assert facts.contexts_of(f"{HYP}/nvhe/switch.c") == {Ctx.NVHE_HYP, Ctx.PKVM_HYP,
                                                          Ctx.HVHE_HYP}
    assert facts.contexts_of("arch/arm64/kvm/at.c") == {Ctx.VHE}
    guard = facts.guard("is_kernel_in_hyp_mode")
    assert guard is not None and Ctx.NVHE_HYP in guard.true_in and Ctx.VHE in guard.true_in
    for text, name in (("*vcpu_hcr(vcpu)", "vcpu.hcr_el2"),
                       ("vcpu->arch.hcr_el2", "vcpu.hcr_el2"),
                       ("*host_data_ptr(host_debug_state.mdcr_el2)", "host-copy.mdcr_el2"),
                       ("this_cpu_ptr(&kvm_init_params)->hcr_el2",
                        "percpu.init_params.hcr_el2")):
        storage = facts.storage_of(text)
        assert storage is not None and storage.name == name, text
    assert facts.storage_of("vcpu->arch.hcrx_el2") is None
