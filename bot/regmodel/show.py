"""Plain-text tables of the model for `bot regmodel show`."""

from __future__ import annotations

from bot.errors import BadInput
from bot.regmodel.model import Field, Register, RegisterModel, format_bits


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def _enc(reg: Register) -> str:
    if reg.encoding is None:
        return ""
    return " (op0=%d op1=%d CRn=%d CRm=%d op2=%d)" % tuple(reg.encoding)


def register_table(reg: Register) -> str:
    """Every field and reserved range of `reg`, from bit 63 down."""
    rows: list[list[str]] = [["bits", "field", "polarity", "feature", "aliases", "note"]]
    entries: list[tuple[int, list[str]]] = []
    for f in reg.fields:
        entries.append((f.msb, [f.bits, f.name, str(f.polarity), f.feature or "-",
                                ",".join(f.aliases) or "-", f.note]))
    for label, ranges in (("(RES0)", reg.res0), ("(RES1)", reg.res1), ("(UNKN)", reg.unkn)):
        for msb, lsb in ranges:
            entries.append((msb, [format_bits(msb, lsb), label, "", "", "", ""]))
    rows += [cells for _, cells in sorted(entries, key=lambda e: -e[0])]
    head = "%s%s, %d bits: %s (from %s)" % (reg.name, _enc(reg), reg.width,
                                             reg.description or "register", reg.source)
    return "\n".join([head] + _table(rows)) + "\n"


def field_detail(model: RegisterModel, f: Field) -> str:
    lines = [
        "%s.%s  bits %s  mask %#018x" % (f.register, f.name, f.bits, f.mask),
        "polarity:  %s" % f.polarity,
        "feature:   %s" % (f.feature or "- (every Armv8.0 EL2)"),
        "aliases:   %s" % (", ".join(f.aliases) or "-"),
        "kernel:    %s" % ", ".join(_kernel_names(model, f)),
    ]
    if f.values:
        lines.append("values:    %s" % ", ".join("%s=%d" % v for v in f.values))
    if f.note:
        lines.append("note:      %s" % f.note)
    if f.kernel_note:
        lines.append("kvm_arm.h: %s" % f.kernel_note)
    lines.append("source:    %s" % f.source)
    for sid in f.source.split(";")[-1].split():
        if sid in model.sources:
            lines.append("  %s: %s" % (sid, model.sources[sid]))
    sets = model.flag_sets_with(f.register, f.name)
    if sets:
        lines.append("in flag sets:")
        lines += ["  %s (%s)" % (fs.name, fs.era) for fs in sets]
    return "\n".join(lines) + "\n"


def _kernel_names(model: RegisterModel, f: Field) -> list[str]:
    reg = model.registers[f.register]
    names = ["%s_%s" % (reg.name, f.name)]
    for prefix in reg.prefixes:
        if prefix != reg.name + "_":
            names += [prefix + n for n in (f.name, *f.aliases)]
    return list(dict.fromkeys(names))


def show(model: RegisterModel, what: str | None = None) -> str:
    """The tables for `bot regmodel show [REGISTER[.FIELD]]`.

    WHAT is a register, REGISTER.FIELD, or any name `lookup` understands
    (HCR_TGE, MDCR_EL2_E2PB_MASK...).
    """
    if not what:
        return "\n".join(register_table(r) for r in model.registers.values())
    reg = model.register(what)
    if reg is not None:
        return register_table(reg)
    f = model.lookup(what)
    if f is None and "." in what:
        reg_name = what.split(".", 1)[0]
        if model.register(reg_name) is None:
            raise BadInput("%s: no register %s in the model (known: %s)"
                           % (what, reg_name, ", ".join(model.registers)))
        raise BadInput("%s: %s has no such field" % (what, reg_name))
    if f is None:
        raise BadInput("%s: not a register, field or kernel macro the model knows" % what)
    return field_detail(model, f)
