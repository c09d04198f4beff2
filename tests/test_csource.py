"""C analysis: register accesses, assignments, declarations, enclosing functions."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.parse.csource import Access, attribute, c_functions, line_facts, section_function


def test_accessors_and_asm() -> None:
    [w] = line_facts("\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);").accesses
    assert (w.kind, w.register, w.value) == (Access.WRITE, "HCR_EL2", "HCR_HOST_VHE_FLAGS")
    [r] = line_facts("\tval = read_sysreg_s(SYS_MDCR_EL2);").accesses
    assert (r.kind, r.register) == (Access.READ, "MDCR_EL2")
    [cs] = line_facts("\tsysreg_clear_set(hcr_el2, HCR_TGE, 0);").accesses
    assert (cs.kind, cs.clear, cs.set) == (Access.CLEAR_SET, "HCR_TGE", "0")
    [m] = line_facts("\tmsr\thcr_el2, x1", asm_file=True).accesses
    assert (m.kind, m.register, m.value, m.asm) == (Access.WRITE, "HCR_EL2", "x1", True)
    [i] = line_facts('\tasm volatile("msr hcr_el2, %0" :: "r" (v));').accesses
    assert i.register == "HCR_EL2"
    # The GIC's ICH_HCR_EL2 is a different register.
    assert line_facts("\tmsr_s\tSYS_ICH_HCR_EL2, xzr", asm_file=True).accesses[0].register \
        == "ICH_HCR_EL2"


def test_barriers_irqs_and_percpu() -> None:
    assert line_facts("\tisb();").isb
    assert line_facts("\tlocal_irq_save(cxt->flags);").irq == ("local_irq_save",)
    assert line_facts("\tmdcr = __this_cpu_read(mdcr_el2);").percpu == ("__this_cpu_read",)
    assert line_facts("\tpreempt_disable();").preempt == ("preempt_disable",)


def test_assignments_to_shadow_and_host_copies() -> None:
    [a] = line_facts("\tvcpu->arch.hcr_el2 &= ~HCR_TWI;").assigns
    assert (a.target, a.op, a.value, a.register, a.vcpu) == (
        "vcpu->arch.hcr_el2", "&=~", "HCR_TWI", "HCR_EL2", True)
    [b] = line_facts("\t*vcpu_hcr(vcpu) |= HCR_TVM;").assigns
    assert (b.op, b.vcpu) == ("|=", True)
    [h] = line_facts("\t*host_data_ptr(host_debug_state.mdcr_el2) = read_sysreg(mdcr_el2);"
                     ).assigns
    assert (h.register, h.host, h.op) == ("MDCR_EL2", True, "=")


def test_declaration_widths() -> None:
    [d] = line_facts("\tu32 mdcr_el2;").decls
    assert (d.type, d.width, d.register, d.function) == ("u32", 32, "MDCR_EL2", False)
    [f] = line_facts("u32 __hyp_text __kvm_get_mdcr_el2(void)").decls
    assert (f.name, f.function) == ("__kvm_get_mdcr_el2", True)
    [v] = line_facts("\tu16 imm = (hcr >> shift) & GENMASK(16, 0);").decls
    assert (v.width, v.from_value) == (16, True)
    assert not line_facts("static inline u32 __gen_mov_hcr_insn(u64 hcr, u32 rd, int i)").decls


def test_enclosing_function_from_section_and_text() -> None:
    lines = ["\twrite_sysreg(val, hcr_el2);", "\tisb();", "}", "",
             "static void exit_vmid_context(struct tlb_inv_context *cxt)", "{",
             "\twrite_sysreg(HCR_HOST_VHE_FLAGS, hcr_el2);", "}"]
    funcs = attribute(lines, "static void enter_vmid_context(struct kvm_s2_mmu *mmu,",
                      "arch/arm64/kvm/hyp/vhe/tlb.c")
    assert funcs[:3] == ["enter_vmid_context"] * 3
    assert funcs[3] is None
    assert funcs[4:] == ["exit_vmid_context"] * 4


def test_assembly_functions() -> None:
    lines = ["SYM_CODE_START(___kvm_hyp_init)", "\tmov_q\tx1, HCR_HOST_NVHE_FLAGS",
             "\tmsr\thcr_el2, x1", "SYM_CODE_END(___kvm_hyp_init)"]
    assert attribute(lines, "", "arch/arm64/kvm/hyp/nvhe/hyp-init.S") == ["___kvm_hyp_init"] * 4
    assert section_function("SYM_FUNC_START(__kvm_hyp_init)") == "__kvm_hyp_init"


def test_c_functions_with_kernel_attributes() -> None:
    text = ("void __hyp_text __noreturn hyp_panic(struct kvm_cpu_context *host_ctxt)\n"
            "{\n\twrite_sysreg(HCR_HOST_NVHE_FLAGS, hcr_el2);\n}\n")
    [span] = c_functions(text)
    assert (span.name, span.start, span.end, span.has_end) == ("hyp_panic", 0, 3, True)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_line_facts_never_raise(text: str) -> None:
    line_facts(text)
    line_facts(text, asm_file=True)
    attribute(text.split("\n"), text[:40], "a.c")
