"""The model against the real files of Debian's linux-source-6.12."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot import cli
from bot.regmodel import evaluate_defines, load_model, parse_sysreg
from bot.regmodel.diff import DiffKind, diff_tree, format_report
from bot.regmodel.kvmarm import macro_layout
from bot.regmodel.load import KVM_ARM_H, read_tree

CONFIG = Path(__file__).parent / "data" / "config" / "test.toml"

# What `bot regmodel diff` must find in 6.12, and nothing else: the
# hand-written RES0 masks of kvm_arm.h call bits reserved that the
# architecture has since given fields (MDCR_EL2_RES0 even covers E2TB, which
# the same file defines).
EXPECTED_6_12 = {
    ("res0", "HCR_EL2", "GPF", (48, 48), KVM_ARM_H, "model"),
    ("res0", "HCR_EL2", "TME", (39, 39), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "EnSTEPOP", (50, 50), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "EBWE", (43, 43), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "PMEE", (41, 40), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "PMSSE", (31, 30), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "E2TB", (25, 24), KVM_ARM_H, "model"),
    ("res0", "MDCR_EL2", "EnSPM", (15, 15), KVM_ARM_H, "model"),
}


def test_the_real_sysreg_file_parses(kernel_tree: Path) -> None:
    regs = parse_sysreg((kernel_tree / "arch/arm64/tools/sysreg").read_text(), "sysreg")
    assert len(regs) > 100
    # 6.12 predates the HCR_EL2 (2025) and MDCR_EL2 (late 2024) tables.
    assert "HCR_EL2" not in regs and "MDCR_EL2" not in regs
    hcrx = regs["HCRX_EL2"]
    assert hcrx.encoding == (3, 4, 1, 2, 2)
    assert hcrx.res0_mask | hcrx.field_mask == (1 << 64) - 1
    # The gen-sysreg.awk the kernel builds with accepts the same file.
    assert (kernel_tree / "arch/arm64/tools/gen-sysreg.awk").is_file()


def test_kvm_arm_h_evaluates(kernel_tree: Path) -> None:
    macros = evaluate_defines((kernel_tree / KVM_ARM_H).read_text())
    assert macros["HCR_GUEST_FLAGS"].value == 0x8807C663F
    assert macros["HCR_RES0"].value == (1 << 48) | (1 << 39)
    assert macros["MDCR_EL2_RES0"].value == 0xFFFFFFEFC3758000
    assert (macros["MDCR_EL2_E2TB_MASK"].msb, macros["MDCR_EL2_E2TB_MASK"].lsb) == (25, 24)
    assert macros["VTCR_EL2_T0SZ"].params == ("x",)


def test_every_shipped_field_agrees_with_6_12_or_says_why(kernel_tree: Path) -> None:
    model = load_model()
    tree = read_tree(kernel_tree)
    for name, reg in model.registers.items():
        layout = macro_layout(tree.macros, reg)
        defined = {mf.field.name: mf for mf in layout.fields
                   if mf.field is not None and mf.value_name is None}
        assert not [mf.name for mf in layout.fields if mf.field is None], "unknown macros"
        for f in reg.fields:
            mf = defined.get(f.name)
            # The first kernel that knew the field, checked against 6.12's file:
            # a macro there means 6.12 or earlier, none means a later table.
            assert f.kernel is not None, "%s.%s: no kernel version" % (name, f.name)
            if mf is None:
                assert f.kernel_note, "%s.%s: no macro in 6.12 and no kvm_arm_h note" % (
                    name, f.name)
                assert f.kernel > (6, 12), (name, f.name, f.kernel)
                assert f.kernel_checked, (name, f.name, f.kernel_source)
                continue
            assert (mf.msb, mf.lsb) == (f.msb, f.lsb), (name, f.name, mf)
            assert not f.kernel_note, "%s.%s has a macro: drop its kvm_arm_h note" % (
                name, f.name)
            assert f.kernel <= (6, 12), (name, f.name, f.kernel)
        for mf in layout.fields:
            if mf.value_name is not None:
                assert mf.value == (mf.field.value(mf.value_name) or 0) << mf.field.lsb


def test_diff_reports_exactly_the_real_disagreements(kernel_tree: Path) -> None:
    report = diff_tree(load_model(), kernel_tree)
    assert {d.key() for d in report.disagreements} == EXPECTED_6_12
    assert report.version == (6, 12, 117)
    e2tb = next(d for d in report.disagreements if d.field == "E2TB")
    assert e2tb.kind == DiffKind.RES0
    assert re.fullmatch(r"arch/arm64/include/asm/kvm_arm\.h:\d+", e2tb.where)
    assert "MDCR_EL2_E2TB_MASK/MDCR_EL2_E2TB_SHIFT" in e2tb.message
    assert any("no macro for MDCR_EL2.{EnSTEPOP,EBWE,PMEE,PMSSE,EnSPM}" in n
               for n in report.notes)
    assert any("arch/arm64/tools/sysreg: no HCR_EL2 block" in n for n in report.notes)
    # 6.12's flag sets are the shipped values for its era: no flag-set line.
    assert not [d for d in report.disagreements if d.kind == DiffKind.FLAG_SET]


def test_cli_diff_prints_them_and_exits_1(kernel_tree: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["--config", str(CONFIG), "regmodel", "diff",
                     "--kernel-tree", str(kernel_tree)])
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "kernel tree %s (version 6.12.117): 8 disagreements" % kernel_tree
    assert sum(1 for line in lines if ": res0: " in line) == 8
    assert any(line.endswith("MDCR_EL2_RES0 marks bits 31:30 RES0; the model has "
                             "MDCR_EL2.PMSSE (FEAT_PMUv3_SS) there") for line in lines)


def test_diff_finds_a_moved_field_and_a_changed_flag_set(kernel_tree: Path,
                                                         tmp_path: Path) -> None:
    """A copy of the 6.12 header with two real-looking mistakes in it."""
    tree = tmp_path / "linux"
    (tree / "arch/arm64/include/asm").mkdir(parents=True)
    (tree / "Makefile").write_text((kernel_tree / "Makefile").read_text())
    text = (kernel_tree / KVM_ARM_H).read_text()
    text = text.replace("#define HCR_TVM\t\t(UL(1) << 26)", "#define HCR_TVM\t\t(UL(1) << 25)")
    text = text.replace("HCR_FMO | HCR_IMO | HCR_PTW | HCR_TID3)",
                        "HCR_FMO | HCR_IMO | HCR_PTW | HCR_TID3 | HCR_TID2)")
    text = text.replace("#define MDCR_EL2_HPMN_MASK\t(UL(0x1F))",
                        "#define MDCR_EL2_HPMN_MASK\t(UL(0x1F))\n"
                        "#define MDCR_EL2_NEW\t(UL(1) << 44)")
    (tree / KVM_ARM_H).write_text(text)
    report = diff_tree(load_model(), tree)
    keys = {d.key() for d in report.disagreements}
    assert keys - EXPECTED_6_12 == {
        ("position", "HCR_EL2", "TVM", (25, 25), KVM_ARM_H, "model"),
        ("flag-set", "HCR_EL2", None, None, KVM_ARM_H, "model"),
        ("unknown-field", "MDCR_EL2", "NEW", (44, 44), KVM_ARM_H, "model"),
    }
    assert keys >= EXPECTED_6_12
    flag = next(d for d in report.disagreements if d.kind == DiffKind.FLAG_SET)
    assert "HCR_GUEST_FLAGS" in flag.message and "tree adds TID2" in flag.message
    assert "note: arch/arm64/tools/sysreg: not in this tree" in format_report(report)


def test_diff_compares_a_tree_whose_sysreg_has_the_registers(kernel_tree: Path,
                                                             tmp_path: Path) -> None:
    """A newer-style tree: MDCR_EL2 in tools/sysreg, kvm_arm.h only aliases it."""
    tree = tmp_path / "linux"
    (tree / "arch/arm64/include/asm").mkdir(parents=True)
    (tree / "arch/arm64/tools").mkdir(parents=True)
    shipped = (Path(__file__).parents[1] / "bot/regmodel/hcr_mdcr.sysreg").read_text()
    mdcr = shipped[shipped.index("Sysreg\tMDCR_EL2"):]
    mdcr = mdcr.replace("Field\t31:30\tPMSSE\n", "Res0\t31:30\n")   # a stale table
    mdcr = mdcr.replace("Field\t19\tTTRF\n", "Field\t19\tTTRFX\n")  # a renamed field
    sysreg = (kernel_tree / "arch/arm64/tools/sysreg").read_text() + "\n" + mdcr
    (tree / "arch/arm64/tools/sysreg").write_text(sysreg)
    (tree / KVM_ARM_H).write_text(
        "#define HCR_TGE (UL(1) << 27)\n"
        "#define MDCR_EL2_TDA MDCR_EL2_TDA_MASK_IS_GENERATED\n"
        "#define MDCR_EL2_TTRF (UL(1) << 19)\n"
        "#define MDCR_EL2_RES0 (GENMASK(63, 51) | GENMASK(31, 30))\n")
    report = diff_tree(load_model(), tree)
    keys = {d.key() for d in report.disagreements}
    sysreg_at, header = "arch/arm64/tools/sysreg", KVM_ARM_H
    expected = {
        # tools/sysreg against the shipped table (one line, not also missing-field)
        ("res0", "MDCR_EL2", "PMSSE", (31, 30), sysreg_at, "model"),
        # the hand-written mask against the model...
        ("res0", "MDCR_EL2", "PMSSE", (31, 30), header, "model"),
    }
    expected |= {("unknown-field", "MDCR_EL2", "TTRFX", (19, 19), sysreg_at, "model"),
                 ("missing-field", "MDCR_EL2", "TTRF", (19, 19), sysreg_at, "model"),
                 # a hand-written macro the tree's own table no longer names
                 ("unknown-field", "MDCR_EL2", "TTRF", (19, 19), header, "sysreg")}
    # ...which also leaves out bits both the model and the tree's table reserve.
    for bits in ((49, 44), (42, 42), (39, 37), (35, 32), (22, 20), (18, 18), (16, 16)):
        expected |= {("res0", "MDCR_EL2", None, bits, header, against)
                     for against in ("model", "sysreg")}
    assert keys == expected
    # The alias-only macro is not compared: tools/sysreg generates it.
    assert not [d for d in report.disagreements if d.field == "TDA"]


def test_model_from_the_6_12_tree(kernel_tree: Path) -> None:
    """The config key regmodel.kernel_tree: layout from 6.12, the rest from kvm.toml."""
    model = load_model(str(kernel_tree))
    assert model.kernel_version == (6, 12, 117)
    hcr, mdcr = model.registers["HCR_EL2"], model.registers["MDCR_EL2"]
    assert hcr.field("TWEDEL") is None and hcr.field("GPF") is None
    assert hcr.res0 == ((48, 48), (39, 39))
    tpcp = model.lookup("HCR_TPC")
    assert (tpcp.name, tpcp.bits, tpcp.aliases) == ("TPCP", "23", ("TPC",))
    assert tpcp.source.startswith(KVM_ARM_H + ":")
    assert model.polarity("HCR_EL2", "API").value == "allow"
    assert model.lookup("MDCR_EL2_E2PB_MASK").bits == "13:12"
    assert mdcr.field("PMSSE") is None
    # The stale mask minus E2TB, which the same header defines as a field.
    assert mdcr.res0 == ((63, 37), (35, 30), (22, 20), (18, 18), (16, 15))
    guest = model.flag_set("HCR_GUEST_FLAGS")
    assert guest.era == "v6.12" and guest.source.startswith(KVM_ARM_H + ":")
    assert guest.value == load_model().flag_set("HCR_GUEST_FLAGS", "v6.12").value
    assert "BSU_IS" in guest.fields
    assert model.role("__activate_traps", "arch/arm64/kvm/hyp/vhe/switch.c").mode == "vhe"


def _defines(text: str, name: str) -> bool:
    """Whether a C, header or assembly file defines `name` (not just declares it)."""
    n = re.escape(name)
    return bool(re.search(r"^(?!\s*(?:extern\b|//|\*))[^;\n]*\b%s\s*\([^;]*$" % n, text, re.M)
                or re.search(r"\bSYM_\w+\(\s*%s\b" % n, text)
                or re.search(r"^\s*\.macro\s+%s\b" % n, text, re.M))


def test_the_save_restore_map_matches_6_12_where_it_says_so(kernel_tree: Path) -> None:
    """Entries sourced from 6.12 name functions defined in one of their files."""
    model = load_model()
    checked = 0
    for fr in model.functions:
        if "kvm-6-12" not in fr.source.split():
            continue
        texts = [(kernel_tree / f).read_text() for f in fr.files
                 if (kernel_tree / f).is_file()]
        assert texts, "%s: none of %s is in the tree" % (fr.name, fr.files)
        assert any(_defines(t, fr.name) for t in texts), "%s not defined in %s" % (
            fr.name, fr.files)
        checked += 1
    assert checked >= 40
    kvm = "\n".join(p.read_text() for p in (kernel_tree / "arch/arm64").rglob("*")
                    if p.is_file() and p.suffix in (".c", ".h", ".S"))
    flat = " ".join(kvm.split())
    for v in model.values:
        if "kvm-6-12" in v.source.split() or "kvm-arm-6-12" in v.source.split():
            assert v.expr in flat, v.expr


def test_config_key_loads_the_model_from_the_tree(
        kernel_tree: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("BOT_REGMODEL_KERNEL_TREE", str(kernel_tree))
    assert cli.main(["--config", str(CONFIG), "regmodel", "show", "HCR_EL2"]) == 0
    out = capsys.readouterr().out
    assert "(from %s)" % KVM_ARM_H in out.splitlines()[0]
    rows = [line.split()[:2] for line in out.splitlines()[2:]]
    assert ["48", "(RES0)"] in rows and ["39", "(RES0)"] in rows
    assert ["63:60", "TWEDEL"] not in rows and ["23", "TPCP"] in rows
