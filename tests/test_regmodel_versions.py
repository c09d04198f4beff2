"""What a kernel version knew (fields by the first kernel that knew them), and
which version a series was written against when no repository says."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot import config as botconfig
from bot.data import BaseSource
from bot.lore.assemble import assemble
from bot.regmodel import RegisterModel, load_model
from bot.regmodel.versions import infer_version
from bot.sources import InputSet
from tests.conftest import DATA

KVM_TOML = Path(__file__).parents[1] / "bot" / "regmodel" / "kvm.toml"


@pytest.fixture(scope="module")
def model() -> RegisterModel:
    return load_model()


def _names(fields) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.name for f in fields}


def test_known_fields_follow_the_first_kernel_that_knew_them(model: RegisterModel) -> None:
    at_6_12 = _names(model.known_fields("MDCR_EL2", "v6.12"))
    assert {"E2TB", "TTRF", "HLP", "HPMN"} <= at_6_12
    # In the tools/sysreg table from v6.13 only.
    assert not {"PMSSE", "EBWE", "PMEE", "EnSTEPOP", "EnSPM"} & at_6_12
    assert {"PMSSE", "EnSTEPOP"} <= _names(model.known_fields("MDCR_EL2", "v6.13"))
    assert "E2TB" not in _names(model.known_fields("MDCR_EL2", "v5.12"))
    assert "TTRF" in _names(model.known_fields("MDCR_EL2", (5, 12, 3)))
    assert _names(model.known_fields("HCR_EL2", None)) == _names(
        model.registers["HCR_EL2"].fields)


def test_res0_at_a_version_is_what_it_did_not_know(model: RegisterModel) -> None:
    ata = 1 << 56
    assert model.res0_mask_at("HCR_EL2", "v5.9") & ata
    assert not model.res0_mask_at("HCR_EL2", "v5.10") & ata
    mdcr = model.res0_mask_at("MDCR_EL2", "v6.12")
    assert mdcr & (0b11 << 30) and not mdcr & (0b11 << 24)   # PMSSE unknown, E2TB known
    # Today every bit of both registers is a field or RES0 in the table.
    assert model.res0_mask_at("MDCR_EL2", None) == model.registers["MDCR_EL2"].res0_mask


def test_every_field_says_where_its_kernel_version_comes_from(model: RegisterModel) -> None:
    unchecked = []
    for reg in model.registers.values():
        for f in reg.fields:
            assert f.kernel is not None and f.kernel_source and f.arch.startswith("Armv"), f
            for sid in f.kernel_source.split():
                assert sid in model.sources
            if not f.kernel_checked:
                unchecked.append(f.name)
    # What memory alone dates is said to be so, and stays a minority.
    assert "TGE" in unchecked and "ATA" not in unchecked
    assert 0 < len(unchecked) < sum(len(r.fields) for r in model.registers.values())
    assert "memory" in model.sources and "NOT checked" in model.sources["memory"]


def test_no_era_is_left_to_verify() -> None:
    text = KVM_TOML.read_text()
    assert "(verify" not in text
    data = __import__("tomllib").loads(text)
    for table in ("flag_sets", "functions", "values", "file_eras"):
        for item in data.get(table, []):
            if item.get("era"):
                assert item.get("source"), (table, item)


def test_snapshot_files_follow_the_layout_of_the_era(model: RegisterModel) -> None:
    old, new = model.snapshot_files("v5.4"), model.snapshot_files("v6.12")
    assert "arch/arm64/kvm/hyp/switch.c" in old and "virt/kvm/arm/arm.c" in old
    assert "arch/arm64/kvm/hyp/vhe/switch.c" not in old
    assert "arch/arm64/kvm/hyp/include/hyp/" not in old and "arch/arm64/tools/sysreg" not in old
    assert "arch/arm64/kvm/hyp/vhe/switch.c" in new and "arch/arm64/kvm/arm.c" in new
    assert "arch/arm64/kvm/hyp/switch.c" not in new and "virt/kvm/arm/arm.c" not in new
    assert {"arch/arm64/kvm/hyp/include/hyp/", "arch/arm64/include/asm/kvm_arm.h"} <= set(new)


def _series(rel: str):  # type: ignore[no-untyped-def]
    cfg = botconfig.Config()
    return [s for raws in InputSet([str(DATA / rel)], cfg.input).threads()
            for s in assemble(raws).series]


@pytest.mark.parametrize(("rel", "version", "why"), [
    # hyp/tlb.c before the 5.9 split, sent when v5.3 was out.
    ("labelled/clean-tlb-epd-erratum-1319367.mbox", "v5.5", "arch/arm64/kvm/hyp/tlb.c"),
    # virt/kvm/arm before the 5.8 move.
    ("labelled/clean-wfi-trapping-direct-lpi.mbox", "v5.5", "virt/kvm/arm/arm.c"),
    # Its HCR_GUEST_FLAGS context is the value of v5.9..v5.18; sent in October 2020.
    ("labelled/problem-polarity-drop-fb.mbox", "v5.11", "HCR_GUEST_FLAGS is the one of "
     "v5.9..v5.18"),
    # kvmarm/next in the 5.9 cycle: the nVHE directory and the old files together.
    ("labelled/clean-split-debug-sr.mbox", "v5.9", "a development tree between v5.8 and v5.9"),
])
def test_the_version_of_a_series_from_its_facts(model: RegisterModel, rel: str, version: str,
                                                why: str) -> None:
    [series, *_] = _series(rel)
    base = infer_version(series, model)
    assert (base.source, base.version, base.commit) == (BaseSource.VERSION, version, None)
    assert why in base.detail


def test_facts_that_contradict_each_other_give_no_version(model: RegisterModel) -> None:
    # A made-up patch dated 2020 whose kvm_arm.h context has HCR_DCT (v5.15).
    [series] = _series("rules/field-definition-trigger.patch")
    base = infer_version(series, model)
    assert base.source is BaseSource.NONE and base.version is None
    assert "disagree" in base.detail and "HCR_DCT" in base.detail


def test_no_facts_is_the_newest_version_known(model: RegisterModel) -> None:
    [series] = _series("fuzz/lying-hunk.eml")
    base = infer_version(series, model)
    assert base.version == "v%d.%d" % model.versions()[-1]
    assert "no dated facts" in base.detail
