"""The shipped register model and the API rules use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot import cli
from bot.errors import ConfigError
from bot.regmodel import Polarity, RegisterModel, Role, load_model
from bot.regmodel.kvmarm import kernel_macros
from bot.regmodel.load import build_model, read_kvm_data
from bot.regmodel.model import era_contains, mask_to_ranges, parse_era

# The review guide's tables (sections 2 and 3): bits of every field.
HCR = {
    "TWEDEL": (63, 60), "TWEDEn": (59, 59), "TID5": (58, 58), "DCT": (57, 57),
    "ATA": (56, 56), "TTLBOS": (55, 55), "TTLBIS": (54, 54), "EnSCXT": (53, 53),
    "TOCU": (52, 52), "AMVOFFEN": (51, 51), "TICAB": (50, 50), "TID4": (49, 49),
    "GPF": (48, 48), "FIEN": (47, 47), "FWB": (46, 46), "NV2": (45, 45), "AT": (44, 44),
    "NV1": (43, 43), "NV": (42, 42), "API": (41, 41), "APK": (40, 40), "TME": (39, 39),
    "MIOCNCE": (38, 38), "TEA": (37, 37), "TERR": (36, 36), "TLOR": (35, 35),
    "E2H": (34, 34), "ID": (33, 33), "CD": (32, 32), "RW": (31, 31), "TRVM": (30, 30),
    "HCD": (29, 29), "TDZ": (28, 28), "TGE": (27, 27), "TVM": (26, 26), "TTLB": (25, 25),
    "TPU": (24, 24), "TPCP": (23, 23), "TSW": (22, 22), "TACR": (21, 21),
    "TIDCP": (20, 20), "TSC": (19, 19), "TID3": (18, 18), "TID2": (17, 17),
    "TID1": (16, 16), "TID0": (15, 15), "TWE": (14, 14), "TWI": (13, 13), "DC": (12, 12),
    "BSU": (11, 10), "FB": (9, 9), "VSE": (8, 8), "VI": (7, 7), "VF": (6, 6),
    "AMO": (5, 5), "IMO": (4, 4), "FMO": (3, 3), "PTW": (2, 2), "SWIO": (1, 1), "VM": (0, 0),
}
MDCR = {
    "EnSTEPOP": (50, 50), "EBWE": (43, 43), "PMEE": (41, 40), "HPMFZS": (36, 36),
    "PMSSE": (31, 30), "HPMFZO": (29, 29), "MTPME": (28, 28), "TDCC": (27, 27),
    "HLP": (26, 26), "E2TB": (25, 24), "HCCD": (23, 23), "TTRF": (19, 19),
    "HPMD": (17, 17), "EnSPM": (15, 15), "TPMS": (14, 14), "E2PB": (13, 12),
    "TDRA": (11, 11), "TDOSA": (10, 10), "TDA": (9, 9), "TDE": (8, 8), "HPME": (7, 7),
    "TPM": (6, 6), "TPMCR": (5, 5), "HPMN": (4, 0),
}
ALLOW = {"TWEDEn", "ATA", "EnSCXT", "AMVOFFEN", "FIEN", "API", "APK", "TME"}


@pytest.fixture(scope="module")
def model() -> RegisterModel:
    return load_model()


def test_every_field_where_the_review_guide_puts_it(model: RegisterModel) -> None:
    for reg, table in (("HCR_EL2", HCR), ("MDCR_EL2", MDCR)):
        got = {f.name: (f.msb, f.lsb) for f in model.registers[reg].fields}
        assert got == table
    assert model.registers["HCR_EL2"].res0 == ()
    assert model.registers["MDCR_EL2"].res0 == (
        (63, 51), (49, 44), (42, 42), (39, 37), (35, 32), (22, 20), (18, 18), (16, 16))
    assert model.registers["HCR_EL2"].encoding == (3, 4, 1, 1, 0)
    assert model.registers["MDCR_EL2"].encoding == (3, 4, 1, 1, 1)


def test_every_fact_has_a_source_and_polarity_follows_the_guide(model: RegisterModel) -> None:
    hcr_allow = {f.name for f in model.registers["HCR_EL2"].fields
                 if f.polarity == Polarity.ALLOW}
    assert hcr_allow == ALLOW
    for reg in model.registers.values():
        for f in reg.fields:
            where, _, ids = f.source.partition("; ")
            assert where.startswith("hcr_mdcr.sysreg:"), f
            assert ids and all(i in model.sources for i in ids.split()), f
    for name in ("VM", "BSU", "VSE"):
        assert model.polarity("HCR_EL2", name) == Polarity.NEUTRAL
    for name in ("HPMN", "E2PB"):
        assert model.polarity("mdcr_el2", name) == Polarity.NEUTRAL
    assert model.polarity("HCR_EL2", "HCR_TGE") == Polarity.TRAP
    with pytest.raises(KeyError):
        model.polarity("HCR_EL2", "NOPE")
    with pytest.raises(KeyError):
        model.polarity("SCTLR_EL1", "M")


@pytest.mark.parametrize(("name", "register", "expect"), [
    ("HCR_TGE", None, ("HCR_EL2", "TGE")),
    ("HCR_EL2_TGE", None, ("HCR_EL2", "TGE")),
    ("hcr_el2_tge_mask", None, ("HCR_EL2", "TGE")),
    ("HCR_TAC", None, ("HCR_EL2", "TACR")),
    ("HCR_TPC", None, ("HCR_EL2", "TPCP")),
    ("HCR_VA", None, ("HCR_EL2", "VSE")),
    ("HCR_ENSCXT", None, ("HCR_EL2", "EnSCXT")),
    ("HCR_ATA_SHIFT", None, ("HCR_EL2", "ATA")),
    ("HCR_BSU_IS", None, ("HCR_EL2", "BSU")),
    ("HCR_EL2_BSU_FS", None, ("HCR_EL2", "BSU")),
    ("MDCR_EL2_HPMN_MASK", None, ("MDCR_EL2", "HPMN")),
    ("MDCR_EL2_E2PB_SHIFT", None, ("MDCR_EL2", "E2PB")),
    ("MDCR_EL2_E2PB_MASK", None, ("MDCR_EL2", "E2PB")),
    ("MDCR_EL2_E2TB_WIDTH", None, ("MDCR_EL2", "E2TB")),
    ("TGE", "HCR_EL2", ("HCR_EL2", "TGE")),
    ("TGE", None, ("HCR_EL2", "TGE")),
    ("hpmn", "mdcr_el2", ("MDCR_EL2", "HPMN")),
    ("HCR_EL2.TGE", None, ("HCR_EL2", "TGE")),
    ("MDCR_EL2.TDA", "MDCR_EL2", ("MDCR_EL2", "TDA")),
    ("TGE", "MDCR_EL2", None),
    ("HCR_TGE", "MDCR_EL2", None),
    ("HCR_EL2.TGE", "MDCR_EL2", None),
    ("HCR_NOPE", None, None),
    ("HCR_RES0", None, None),
    ("SCTLR_EL1_M", None, None),
])
def test_lookup_any_kernel_name(model: RegisterModel, name: str, register: str | None,
                                expect: tuple[str, str] | None) -> None:
    f = model.lookup(name, register)
    assert (None if f is None else (f.register, f.name)) == expect


def test_register_lookup_ignores_case(model: RegisterModel) -> None:
    assert model.register("hcr_el2") is model.registers["HCR_EL2"]
    assert model.register("NOPE_EL2") is None


def test_decode_and_reserved_bits(model: RegisterModel) -> None:
    fields, rest = model.decode("HCR_EL2", (1 << 27) | (1 << 34) | (1 << 31))
    assert [f.name for f in fields] == ["E2H", "RW", "TGE"] and rest == 0
    fields, rest = model.decode("MDCR_EL2", (3 << 12) | (1 << 50) | (1 << 63) | 0x1F)
    assert [f.name for f in fields] == ["EnSTEPOP", "E2PB", "HPMN"]
    assert rest == 1 << 63
    # The stale hand-written MDCR_EL2_RES0 of linux 6.12, applied as a value:
    stale = 0xFFFFFFEFC3758000
    assert model.res0_violations("MDCR_EL2", stale) == (
        (63, 51), (49, 44), (42, 42), (39, 37), (35, 32), (22, 20), (18, 18), (16, 16))
    assert model.res0_violations("MDCR_EL2", (1 << 24) | (1 << 43)) == ()
    assert model.res0_violations("MDCR_EL2", (1 << 53) | (1 << 52) | (1 << 20)) == (
        (53, 52), (20, 20))
    assert model.res1_violations("MDCR_EL2", 0) == ()
    with pytest.raises(KeyError):
        model.decode("NOPE", 1)
    assert mask_to_ranges(0b1101) == ((3, 2), (0, 0))


def test_flag_sets_by_era(model: RegisterModel) -> None:
    latest = model.flag_set("HCR_GUEST_FLAGS")
    assert latest.era == "v6.14.." and "TID1" in latest.fields
    v612 = model.flag_set("hcr_guest_flags", "v6.12")
    assert v612.era == "v6.5..v6.13" and v612.value == 0x8807C663F
    assert model.flag_set("HCR_GUEST_FLAGS", "6.12.117") is v612
    assert model.flag_set("HCR_GUEST_FLAGS", "v5.9..v5.18").value & (1 << 2)
    assert model.flag_set("HCR_GUEST_FLAGS", "v4.19") is None
    assert model.flag_set("HCR_NOPE") is None
    assert model.flag_set("HCR_HOST_VHE_FLAGS").value == (1 << 31) | (1 << 27) | (1 << 34)
    nvhe = model.flag_set("HCR_HOST_NVHE_FLAGS")
    protected = model.flag_set("HCR_HOST_NVHE_PROTECTED_FLAGS")
    assert protected.value == nvhe.value | (1 << 19)
    assert model.flag_set("HCR_HOST_NVHE_FLAGS", "v5.4").value & (1 << 56) == 0
    hosts_with_ata = {fs.name for fs in model.flag_sets_with("HCR_EL2", "HCR_ATA")}
    assert hosts_with_ata == {"HCR_HOST_NVHE_FLAGS", "HCR_HOST_NVHE_PROTECTED_FLAGS"}
    tvm = model.flag_sets_with("HCR_EL2", "TVM")
    assert [fs.era for fs in tvm] == ["v5.0..v5.4"]
    bsu = model.flag_sets_with("HCR_EL2", "BSU")
    assert len(bsu) == 7 and all(fs.value & (3 << 10) == 1 << 10 for fs in bsu)
    for fs in model.flag_sets:
        assert all(s in model.sources for s in fs.source.split())


def test_eras() -> None:
    assert parse_era("v5.9..v5.18") == ((5, 9), (5, 18))
    assert parse_era("v6.14..") == ((6, 14), None)
    assert era_contains("v6.5..v6.13", "6.12.117") and not era_contains("v6.5..v6.13", "v6.14")
    assert era_contains("v6.14..", (7, 0))
    for bad in ("6", "v6.13..v6.5", "vX", "v6.1..x"):
        with pytest.raises(ValueError):
            parse_era(bad)


def test_roles_for_both_file_layouts(model: RegisterModel) -> None:
    old = model.role("__deactivate_traps", "arch/arm64/kvm/hyp/switch.c")
    assert (old.role, old.layout, old.mode) == (Role.EXIT, "pre-5.9", "both")
    new = model.role("__deactivate_traps", "arch/arm64/kvm/hyp/nvhe/switch.c")
    assert (new.role, new.layout, new.mode) == (Role.EXIT, "post-5.9", "nvhe")
    assert model.role("__deactivate_traps", "kvm/hyp/vhe/switch.c").mode == "vhe"
    assert model.role("__deactivate_traps", "arch/arm64/kvm/arm.c") is None
    assert model.role("__deactivate_traps").role == Role.EXIT
    assert model.role("enter_vmid_context").role == Role.TLB_TO_GUEST
    assert model.role("__tlb_switch_to_host", "arch/arm64/kvm/hyp/tlb.c").layout == "pre-5.9"
    assert model.role("hyp_panic").role == Role.PANIC
    assert model.role("fixup_guest_exit").role == Role.EARLY_EXIT
    assert model.role("vcpu_reset_hcr").role == Role.VCPU_INIT
    assert model.role("deactivate_traps_vhe_put").role == Role.VCPU_PUT
    assert model.role("activate_traps_vhe_load").role == Role.VCPU_LOAD
    assert model.role("cpu_prepare_hyp_mode").role == Role.INIT
    assert model.role("not_a_kvm_function") is None
    assert len(model.roles("__activate_traps")) == 3
    every = {fr.role for fr in model.functions}
    assert every == set(Role)
    layouts = {(fr.layout) for fr in model.functions}
    assert layouts == {"pre-5.9", "post-5.9", "any"}


def test_guest_and_host_value_expressions(model: RegisterModel) -> None:
    assert "vcpu->arch.hcr_el2" in model.guest_value_exprs("HCR_EL2")
    assert "vcpu->arch.mdcr_el2" in model.guest_value_exprs("mdcr_el2")
    host_hcr = model.host_value_exprs("HCR_EL2")
    for expr in ("HCR_HOST_VHE_FLAGS", "HCR_HOST_NVHE_FLAGS",
                 "HCR_HOST_NVHE_PROTECTED_FLAGS", "kvm_init_params.hcr_el2"):
        assert expr in host_hcr
    host_mdcr = model.host_value_exprs("MDCR_EL2")
    for expr in ("host_debug_state.mdcr_el2", "mdcr_el2_host"):
        assert expr in host_mdcr
    assert not set(host_hcr) & set(model.guest_value_exprs("HCR_EL2"))
    assert model.value_expr("vcpu->arch.hcr_el2").side == "guest"
    assert model.value_expr("nothing") is None


def test_macros_table_for_the_evaluator(model: RegisterModel) -> None:
    table = kernel_macros(model)
    assert table["HCR_EL2_TGE"].value == 1 << 27
    assert table["HCR_EL2_BSU_IS"].value == 1           # gen-sysreg.awk: unshifted
    assert table["HCR_BSU_IS"].value == 1 << 10         # kvm_arm.h: shifted
    assert table["HCR_TPC"].value == 1 << 23
    assert table["MDCR_EL2_E2PB_MASK"].value == 3 << 12
    assert table["MDCR_EL2_E2PB_SHIFT"].value == 12
    assert table["MDCR_EL2_RES0"].value == model.registers["MDCR_EL2"].res0_mask
    assert table["SYS_HCR_EL2"].value == 3 << 19 | 4 << 16 | 1 << 12 | 1 << 8


def test_load_is_cached() -> None:
    assert load_model() is load_model() is load_model("")


def _kvm_toml() -> str:
    return (Path(__file__).parents[1] / "bot" / "regmodel" / "kvm.toml").read_text()


@pytest.mark.parametrize(("edit", "message"), [
    (("polarity = \"trap\", feature = \"FEAT_MTE2\"",
      "polarity = \"trapped\", feature = \"FEAT_MTE2\""),
     "kvm.toml: registers.HCR_EL2.fields.TID5.polarity: must be one of trap, allow, neutral"),
    (("era = \"v5.0..v5.4\"", "era = \"v5.4..v5.0\""),
     "kvm.toml: flag_sets[0].era: era 'v5.4..v5.0' ends before it starts"),
    (("role = \"entry\"", "role = \"enter\""), "kvm.toml: functions[0].role: must be one of"),
    (("source = \"guest-tvm\"", "source = \"no-such-source\""),
     "kvm.toml: flag_sets[0].source: unknown source id 'no-such-source'"),
    (("schema = 1", "schema = 1\nextra = true"), "kvm.toml: (top).extra: unknown key"),
    (("side = \"guest\"", "side = \"both\""), "kvm.toml: values[0].side: must be one of"),
    (("schema = 1", "schema = = 1"), "kvm.toml: not valid TOML"),
])
def test_kvm_toml_problems_name_the_key(edit: tuple[str, str], message: str) -> None:
    text = _kvm_toml()
    assert edit[0] in text
    with pytest.raises(ConfigError) as err:
        read_kvm_data(text.replace(edit[0], edit[1], 1))
    assert str(err.value).startswith(message)


def _sysreg_text() -> str:
    return (Path(__file__).parents[1] / "bot" / "regmodel" / "hcr_mdcr.sysreg").read_text()


def test_layout_and_kvm_toml_must_describe_the_same_fields() -> None:
    sysreg, kvm = _sysreg_text(), _kvm_toml()
    model = build_model(sysreg, kvm, "test")
    assert model.registers["HCR_EL2"].field("TID5").polarity == Polarity.TRAP
    tid5 = next(line for line in kvm.splitlines() if line.startswith("TID5 = "))
    with pytest.raises(ConfigError, match=r"^kvm.toml: registers.HCR_EL2.fields: no entry "
                       r"for TID5 \(hcr_mdcr.sysreg:\d+\)$"):
        build_model(sysreg, kvm.replace(tid5 + "\n", ""), "test")
    with pytest.raises(ConfigError, match=r"^kvm.toml: registers.HCR_EL2.fields.BOGUS: "
                       r"hcr_mdcr.sysreg has no such field$"):
        build_model(sysreg, kvm.replace(tid5, tid5 + '\nBOGUS = { polarity = "trap", '
                                        'source = "ddi0601" }'), "test")
    with pytest.raises(ConfigError, match=r"flag_sets\[0\].fields: BSU is not a one-bit"):
        build_model(sysreg, kvm.replace('"VM", "TVM", "BSU_IS"', '"VM", "TVM", "BSU"', 1),
                    "test")
    with pytest.raises(ConfigError, match=r"^hcr_mdcr.sysreg:\d+: unknown statement"):
        build_model(sysreg.replace("Field\t63:60\tTWEDEL", "Feld\t63:60\tTWEDEL"), kvm,
                    "test")


def test_cli_show_prints_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = ["--config", str(Path(__file__).parent / "data" / "config" / "test.toml")]
    assert cli.main(config + ["regmodel", "show"]) == 0
    out = capsys.readouterr().out
    assert "HCR_EL2 (op0=3 op1=4 CRn=1 CRm=1 op2=0), 64 bits" in out
    assert "MDCR_EL2 (op0=3 op1=4 CRn=1 CRm=1 op2=1), 64 bits" in out
    rows = [line.split() for line in out.splitlines()]
    assert ["63:51", "(RES0)"] in rows
    assert rows[[r[:2] for r in rows].index(["27", "TGE"])][:5] == ["27", "TGE", "trap", "-", "-"]
    assert cli.main(config + ["regmodel", "show", "MDCR_EL2.E2PB"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("MDCR_EL2.E2PB  bits 13:12  mask 0x0000000000003000\n")
    assert "kernel:    MDCR_EL2_E2PB" in out
    assert cli.main(config + ["regmodel", "show", "HCR_TPC"]) == 0
    assert "HCR_EL2.TPCP" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["regmodel", "show", "HCR_EL2.NOPE"], "bot: error: HCR_EL2.NOPE: HCR_EL2 has no such field"),
    (["regmodel", "show", "XYZ"], "bot: error: XYZ: not a register, field or kernel macro"),
    (["regmodel", "diff", "--kernel-tree", "/nonexistent-tree"],
     "bot: error: /nonexistent-tree: not a directory"),
])
def test_cli_bad_input_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                             args: list[str], message: str) -> None:
    config = ["--config", str(Path(__file__).parent / "data" / "config" / "test.toml")]
    assert cli.main(config + args) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_cli_diff_refuses_a_directory_that_is_not_a_kernel(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = ["--config", str(Path(__file__).parent / "data" / "config" / "test.toml")]
    assert cli.main(config + ["regmodel", "diff", "--kernel-tree", str(tmp_path)]) == 2
    assert "not a kernel tree: no arch/arm64/include/asm/kvm_arm.h" in capsys.readouterr().err


def test_cli_reports_a_malformed_tree_sysreg_with_its_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "arch/arm64/include/asm").mkdir(parents=True)
    (tmp_path / "arch/arm64/tools").mkdir(parents=True)
    (tmp_path / "arch/arm64/include/asm/kvm_arm.h").write_text("#define HCR_TGE (UL(1) << 27)\n")
    (tmp_path / "arch/arm64/tools/sysreg").write_text("Sysreg\tX\t3\t0\t0\t0\t0\nFeld\t63:0\tA\n")
    config = ["--config", str(Path(__file__).parent / "data" / "config" / "test.toml")]
    assert cli.main(config + ["regmodel", "diff", "--kernel-tree", str(tmp_path)]) == 2
    assert capsys.readouterr().err == \
        "bot: error: arch/arm64/tools/sysreg:2: unknown statement 'Feld'\n"


def test_regmodel_imports_no_database_network_or_b4_code() -> None:
    code = ("import sys, bot.regmodel, bot.regmodel.diff, bot.regmodel.show; "
            "bot.regmodel.load_model(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in "
            "('sqlalchemy', 'requests', 'b4', 'liblore', 'jinja2', 'psycopg')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
