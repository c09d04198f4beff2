"""Where a kernel tree disagrees with the shipped model, and with itself.

`bot regmodel diff --kernel-tree PATH` compares, for HCR_EL2 and MDCR_EL2:

- the tree's arch/arm64/tools/sysreg blocks with the shipped layout;
- the hand-written macros of its kvm_arm.h (field positions, Enum values,
  RES0/RES1 masks such as the stale MDCR_EL2_RES0) with the shipped layout;
- those macros with the tree's own tools/sysreg, when the tree has both;
- the tree's HCR flag sets with the shipped values for its version.

A disagreement is something one side gets wrong. That kvm_arm.h has no
macro for a field, or that tools/sysreg lacks a register, is reported as a
note: older trees are incomplete, not wrong.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bot.regmodel.kvmarm import MacroField, MacroLayout, macro_layout
from bot.regmodel.load import (
    KVM_ARM_H,
    SYSREG_FILE,
    SYSREG_PATH,
    KernelTree,
    read_tree,
    tree_registers,
)
from bot.regmodel.model import Field, FlagSet, Register, RegisterModel, format_bits, mask_to_ranges


class DiffKind(enum.StrEnum):
    POSITION = "position"            # a field at other bits
    VALUE = "value"                  # an Enum value macro with another value
    UNKNOWN_FIELD = "unknown-field"  # the kernel names a field the other side lacks
    MISSING_FIELD = "missing-field"  # tools/sysreg lacks a field the other side has
    RES0 = "res0"                    # reserved on one side, a field (or not RES0) on the other
    RES1 = "res1"
    ENCODING = "encoding"
    FLAG_SET = "flag-set"


@dataclass(frozen=True, slots=True, kw_only=True)
class Disagreement:
    """One place where a kernel tree and the model (or the tree's tools/sysreg) differ."""

    kind: DiffKind
    register: str
    field: str | None
    bits: tuple[int, int] | None
    where: str        # file:line in the kernel tree
    against: str      # "model" (the shipped files) or "sysreg" (the tree's own table)
    message: str

    def key(self) -> tuple[str, str, str | None, tuple[int, int] | None, str, str]:
        """What the disagreement is about, without the wording: for comparisons."""
        return (str(self.kind), self.register, self.field, self.bits,
                self.where.rsplit(":", 1)[0], self.against)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffReport:
    """Everything a kernel tree disagrees with, and notes on what was not compared."""

    tree: Path
    version: tuple[int, ...] | None
    disagreements: tuple[Disagreement, ...]
    notes: tuple[str, ...]


def _bits(msb: int | None, lsb: int) -> str:
    return format_bits(msb, lsb) if msb is not None else "%d (from its _SHIFT)" % lsb


def _covering(reg: Register, mask: int) -> list[tuple[Field, int]]:
    return [(f, mask & f.mask) for f in reg.fields if mask & f.mask]


def _res_diff(kind: DiffKind, reg_name: str, theirs: int, ours: Register, ours_res: int,
              where: str, what: str, against: str, own_fields: Iterable[MacroField] = ()
              ) -> list[Disagreement]:
    """`theirs` is a RES0/RES1 mask from the kernel, `ours_res` the other side's."""
    label = "RES0" if kind == DiffKind.RES0 else "RES1"
    out: list[Disagreement] = []
    own = list(own_fields)
    for f, overlap in _covering(ours, theirs):
        for msb, lsb in mask_to_ranges(overlap):
            extra = ""
            same_file = [mf for mf in own if mf.field is not None
                         and mf.field.name == f.name and mf.value_name is None]
            if same_file:
                extra = "; the same file defines %s there" % "/".join(same_file[0].macros)
            feature = " (%s)" % f.feature if f.feature else ""
            out.append(Disagreement(
                kind=kind, register=reg_name, field=f.name, bits=(msb, lsb), where=where,
                against=against,
                message="%s marks bit%s %s %s; %s has %s.%s%s there%s" % (
                    what, "s" if msb != lsb else "", format_bits(msb, lsb), label,
                    _side(against), reg_name, f.name, feature, extra)))
    for msb, lsb in mask_to_ranges(ours_res & ~theirs):
        out.append(Disagreement(
            kind=kind, register=reg_name, field=None, bits=(msb, lsb), where=where,
            against=against,
            message="%s leaves bit%s %s out; %s calls %s %s" % (
                what, "s" if msb != lsb else "", format_bits(msb, lsb), _side(against),
                "them" if msb != lsb else "it", label)))
    return out


def _side(against: str) -> str:
    return "the model" if against == "model" else "tools/sysreg"


def compare_macros(layout: MacroLayout, reg: Register, against: str) -> list[Disagreement]:
    """kvm_arm.h macros of one register against a layout (shipped or sysreg)."""
    out: list[Disagreement] = []
    name = reg.name
    for mf in layout.fields:
        where = "%s:%d" % (KVM_ARM_H, mf.line)
        macros = "/".join(mf.macros)
        target = reg.field(mf.field.name) if mf.field is not None else reg.field(mf.name)
        if target is None:
            out.append(Disagreement(
                kind=DiffKind.UNKNOWN_FIELD, register=name, field=mf.name,
                bits=(mf.msb if mf.msb is not None else mf.lsb, mf.lsb), where=where,
                against=against, message="%s defines %s at bit%s %s; %s has no such field"
                % (macros, mf.name, "s" if mf.msb != mf.lsb else "", _bits(mf.msb, mf.lsb),
                   _side(against))))
            continue
        if mf.value_name is not None:
            expected = (target.value(mf.value_name) or 0) << target.lsb
            if mf.value != expected:
                out.append(Disagreement(
                    kind=DiffKind.VALUE, register=name, field=target.name,
                    bits=(target.msb, target.lsb), where=where, against=against,
                    message="%s is %#x; %s.%s=%s is %#x in %s" % (
                        macros, mf.value or 0, name, target.name, mf.value_name, expected,
                        _side(against))))
            continue
        if mf.lsb != target.lsb or (mf.msb is not None and mf.msb != target.msb):
            out.append(Disagreement(
                kind=DiffKind.POSITION, register=name, field=target.name,
                bits=(mf.msb if mf.msb is not None else mf.lsb, mf.lsb), where=where,
                against=against, message="%s puts %s at bits %s; %s has %s.%s at %s" % (
                    macros, mf.name, _bits(mf.msb, mf.lsb), _side(against), name,
                    target.name, target.bits)))
    for m in layout.res0:
        out += _res_diff(DiffKind.RES0, name, m.value or 0, reg, reg.res0_mask,
                         "%s:%d" % (KVM_ARM_H, m.line), m.name, against, layout.fields)
    for m in layout.res1:
        out += _res_diff(DiffKind.RES1, name, m.value or 0, reg, reg.res1_mask,
                         "%s:%d" % (KVM_ARM_H, m.line), m.name, against, layout.fields)
    return out


def compare_tables(theirs: Register, ours: Register) -> list[Disagreement]:
    """A tree's tools/sysreg block against the shipped one."""
    out: list[Disagreement] = []
    name = ours.name
    head = theirs.source   # "arch/arm64/tools/sysreg:LINE", as read_tree parsed it
    if theirs.encoding != ours.encoding:
        out.append(Disagreement(
            kind=DiffKind.ENCODING, register=name, field=None, bits=None, where=head,
            against="model", message="encoding %s; the model has %s" % (
                theirs.encoding, ours.encoding)))
    seen: set[str] = set()
    for f in theirs.fields:
        where = f.source.split(";")[0]
        mine = ours.field(f.name)
        if mine is None:
            out.append(Disagreement(
                kind=DiffKind.UNKNOWN_FIELD, register=name, field=f.name,
                bits=(f.msb, f.lsb), where=where, against="model",
                message="Field %s %s; the model has no such field" % (f.bits, f.name)))
            continue
        seen.add(mine.name)
        if (f.msb, f.lsb) != (mine.msb, mine.lsb):
            out.append(Disagreement(
                kind=DiffKind.POSITION, register=name, field=mine.name, bits=(f.msb, f.lsb),
                where=where, against="model", message="Field %s %s; the model has %s.%s at %s"
                % (f.bits, f.name, name, mine.name, mine.bits)))
    reserved = theirs.res0_mask | theirs.res1_mask
    for f in ours.fields:
        # A field the table turned back into Res0/Res1 is reported once, below.
        if f.name not in seen and f.mask & reserved != f.mask:
            out.append(Disagreement(
                kind=DiffKind.MISSING_FIELD, register=name, field=f.name, bits=(f.msb, f.lsb),
                where=head, against="model", message="no Field for %s.%s (bits %s in %s)"
                % (name, f.name, f.bits, SYSREG_FILE)))
    out += _res_diff(DiffKind.RES0, name, theirs.res0_mask, ours, ours.res0_mask, head,
                     "tools/sysreg", "model")
    out += _res_diff(DiffKind.RES1, name, theirs.res1_mask, ours, ours.res1_mask, head,
                     "tools/sysreg", "model")
    return out


def _flag_set_diff(model: RegisterModel, tree: KernelTree) -> tuple[list[Disagreement],
                                                                     list[str]]:
    out: list[Disagreement] = []
    notes: list[str] = []
    if tree.version is None:
        return out, ["no Makefile version in the tree: flag sets not compared"]
    version = "v%d.%d" % tree.version[:2]
    for name in sorted({fs.name for fs in model.flag_sets}):
        macro = tree.macros.get(name)
        shipped: FlagSet | None = model.flag_set(name, version)
        if macro is None or macro.value is None:
            if shipped is not None:
                notes.append("%s: %s is not defined (or not evaluable) in %s"
                             % (KVM_ARM_H, name, version))
            continue
        if shipped is None:
            notes.append("%s: the model has no %s for %s" % (KVM_ARM_H, name, version))
            continue
        if macro.value != shipped.value:
            reg = model.registers[shipped.register]
            added = [f.name for f, _ in _covering(reg, macro.value & ~shipped.value)]
            dropped = [f.name for f, _ in _covering(reg, shipped.value & ~macro.value)]
            out.append(Disagreement(
                kind=DiffKind.FLAG_SET, register=shipped.register, field=None, bits=None,
                where="%s:%d" % (KVM_ARM_H, macro.line), against="model",
                message="%s is %#x; the model's %s (%s) is %#x%s%s" % (
                    name, macro.value, name, shipped.era, shipped.value,
                    "; tree adds " + ", ".join(added) if added else "",
                    "; tree lacks " + ", ".join(dropped) if dropped else "")))
    return out, notes


def diff_tree(model: RegisterModel, kernel_tree: str | Path) -> DiffReport:
    """Every disagreement between `model` (the shipped one) and a kernel tree."""
    tree = read_tree(kernel_tree)
    found: list[Disagreement] = []
    notes: list[str] = []
    if tree.sysreg is None:
        notes.append("%s: not in this tree; compared %s only" % (SYSREG_PATH, KVM_ARM_H))
    layouts = tree_registers(tree)
    for name, ours in model.registers.items():
        theirs, origin = layouts[name]
        in_sysreg = origin == SYSREG_PATH
        if in_sysreg:
            found += compare_tables(theirs, ours)
        elif tree.sysreg is not None:
            notes.append("%s: no %s block" % (SYSREG_PATH, name))
        # Macros are read with the model's prefixes and aliases (HCR_TPC is
        # TPCP) and then held against both the model and the tree's table.
        layout = macro_layout(tree.macros, ours, skip_aliases=in_sysreg)
        found += compare_macros(layout, ours, "model")
        if in_sysreg:
            found += compare_macros(layout, theirs, "sysreg")
        if not in_sysreg:
            defined = {mf.field.name for mf in layout.fields if mf.field is not None}
            absent = [f.name for f in ours.fields if f.name not in defined]
            if absent:
                notes.append("%s: no macro for %s.{%s}" % (KVM_ARM_H, name, ",".join(absent)))
    flag_found, flag_notes = _flag_set_diff(model, tree)
    return DiffReport(tree=tree.root, version=tree.version,
                      disagreements=tuple(found + flag_found), notes=tuple(notes + flag_notes))


def format_report(report: DiffReport) -> str:
    version = ".".join(str(v) for v in report.version) if report.version else "unknown"
    lines = ["kernel tree %s (version %s): %d disagreement%s" % (
        report.tree, version, len(report.disagreements),
        "" if len(report.disagreements) == 1 else "s")]
    for d in report.disagreements:
        lines.append("%s: %s: %s" % (d.where, d.kind, d.message))
    for note in report.notes:
        lines.append("note: %s" % note)
    return "\n".join(lines) + "\n"
