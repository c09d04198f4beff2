"""Parser for the kernel's arch/arm64/tools/sysreg format.

The grammar is the one arch/arm64/tools/gen-sysreg.awk accepts:

    Sysreg NAME op0 op1 CRn CRm op2      ... EndSysreg
    SysregFields NAME                    ... EndSysregFields
    Res0|Res1|Unkn|Raz msb[:lsb]
    Field msb[:lsb] NAME
    Enum|UnsignedEnum|SignedEnum msb[:lsb] NAME, then "0bVALUE NAME" lines, EndEnum
    Fields NAME                          (a Sysreg laid out as a SysregFields)

Bits are described from 63 down without gaps or overlaps. Malformed input
raises `BadInput` naming the source and line, like the awk script's fatal().
The result carries layout only: polarity and the rest come from kvm.toml.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.errors import BadInput
from bot.regmodel.model import Field, Polarity, Register

_ENUM_VALUE = re.compile(r"^0b[01]+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Enum value names become macro suffixes, so they may start with a digit (4GB).
_VALUE_NAME = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(slots=True)
class _Block:
    """A Sysreg or SysregFields block while it is being read."""

    kind: str            # "Sysreg" or "SysregFields"
    name: str
    line: int
    encoding: tuple[int, ...] | None
    fields: list[Field] = field(default_factory=list)
    res0: list[tuple[int, int]] = field(default_factory=list)
    res1: list[tuple[int, int]] = field(default_factory=list)
    unkn: list[tuple[int, int]] = field(default_factory=list)
    uses: str | None = None
    uses_line: int = 0
    next_bit: int = 63


@dataclass(slots=True)
class _Enum:
    """An Enum field while its values are being read."""

    name: str
    msb: int
    lsb: int
    line: int
    values: list[tuple[str, int]] = field(default_factory=list)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.lineno = 0
        self.block: _Block | None = None
        self.enum: _Enum | None = None
        self.registers: dict[str, _Block] = {}
        self.layouts: dict[str, _Block] = {}

    def fail(self, message: str) -> BadInput:
        return BadInput("%s:%d: %s" % (self.source, self.lineno, message))

    def expect(self, words: list[str], count: int) -> None:
        if len(words) != count:
            raise self.fail("%s takes %d argument%s, found %d" % (
                words[0], count - 1, "" if count == 2 else "s", len(words) - 1))

    def bits(self, text: str, what: str) -> tuple[int, int]:
        block = self.block
        assert block is not None
        if re.fullmatch(r"\d+", text):
            msb = lsb = int(text)
        else:
            m = re.fullmatch(r"(\d+):(\d+)", text)
            if not m:
                raise self.fail("invalid bit range %r for %s" % (text, what))
            msb, lsb = int(m.group(1)), int(m.group(2))
        if not (0 <= lsb <= msb <= 63):
            raise self.fail("invalid bit range %r for %s" % (text, what))
        if msb != block.next_bit:
            raise self.fail("%s.%s starts at bit %d, expected %d (bits must be described "
                            "from 63 down without gaps or overlaps)"
                            % (block.name, what, msb, block.next_bit))
        block.next_bit = lsb - 1
        return msb, lsb

    def run(self, text: str) -> dict[str, Register]:
        for self.lineno, raw in enumerate(text.splitlines(), 1):
            stripped = raw.strip()
            if not stripped or stripped.startswith("#"):
                continue
            self.statement(stripped.split())
        if self.enum is not None:
            raise self.fail("missing EndEnum for %s" % self.enum.name)
        if self.block is not None:
            raise self.fail("missing End%s for %s" % (self.block.kind, self.block.name))
        return self.finish()

    def statement(self, words: list[str]) -> None:
        kw = words[0]
        if self.enum is not None:
            self.enum_line(words)
            return
        if kw in ("Sysreg", "SysregFields"):
            self.open_block(words)
        elif kw in ("EndSysreg", "EndSysregFields"):
            self.close_block(words)
        elif self.block is None:
            raise self.fail("%s outside a Sysreg or SysregFields block" % kw)
        elif kw in ("Res0", "Res1", "Unkn", "Raz"):
            self.expect(words, 2)
            self.check_fields_used(kw)
            rng = self.bits(words[1], kw.upper())
            if kw == "Res0":
                self.block.res0.append(rng)
            elif kw == "Res1":
                self.block.res1.append(rng)
            elif kw == "Unkn":
                self.block.unkn.append(rng)
        elif kw == "Field":
            self.expect(words, 3)
            self.check_fields_used(kw)
            self.add_field(words[2], self.bits(words[1], words[2]), ())
        elif kw in ("Enum", "UnsignedEnum", "SignedEnum"):
            self.expect(words, 3)
            self.check_fields_used(kw)
            msb, lsb = self.bits(words[1], words[2])
            self.check_name(words[2])
            self.enum = _Enum(name=words[2], msb=msb, lsb=lsb, line=self.lineno)
        elif kw == "EndEnum":
            raise self.fail("EndEnum without Enum")
        elif kw == "Fields":
            self.expect(words, 2)
            if self.block.kind != "Sysreg":
                raise self.fail("Fields is only allowed inside a Sysreg block")
            if self.block.next_bit != 63:
                raise self.fail("Fields %s after fields of %s were already described"
                                % (words[1], self.block.name))
            self.block.uses, self.block.uses_line = words[1], self.lineno
            self.block.next_bit = -1
        else:
            raise self.fail("unknown statement %r" % kw)

    def check_name(self, name: str) -> None:
        if not _NAME.match(name):
            raise self.fail("invalid name %r" % name)

    def check_fields_used(self, kw: str) -> None:
        assert self.block is not None
        if self.block.uses is not None:
            raise self.fail("%s after Fields %s" % (kw, self.block.uses))

    def add_field(self, name: str, rng: tuple[int, int],
                  values: tuple[tuple[str, int], ...]) -> None:
        block = self.block
        assert block is not None
        self.check_name(name)
        if any(f.name == name for f in block.fields):
            raise self.fail("field %s defined twice in %s" % (name, block.name))
        block.fields.append(Field(
            register=block.name, name=name, msb=rng[0], lsb=rng[1], aliases=(),
            polarity=Polarity.NEUTRAL, feature=None, values=values,
            source="%s:%d" % (self.source, self.lineno)))

    def enum_line(self, words: list[str]) -> None:
        enum = self.enum
        assert enum is not None
        if words[0] == "EndEnum":
            self.expect(words, 1)
            self.enum = None
            line, self.lineno = self.lineno, enum.line
            self.add_field(enum.name, (enum.msb, enum.lsb), tuple(enum.values))
            self.lineno = line
            return
        if words[0] in ("EndSysreg", "EndSysregFields", "Sysreg", "SysregFields"):
            raise self.fail("missing EndEnum for %s before %s" % (enum.name, words[0]))
        if not _ENUM_VALUE.match(words[0]):
            raise self.fail("expected a 0b... value or EndEnum inside Enum %s, found %r"
                            % (enum.name, words[0]))
        self.expect(words, 2)
        value = int(words[0][2:], 2)
        if value >> (enum.msb - enum.lsb + 1):
            raise self.fail("value %s does not fit the %d-bit field %s"
                            % (words[0], enum.msb - enum.lsb + 1, enum.name))
        if not _VALUE_NAME.match(words[1]):
            raise self.fail("invalid value name %r" % words[1])
        enum.values.append((words[1], value))

    def open_block(self, words: list[str]) -> None:
        kw = words[0]
        if self.block is not None:
            raise self.fail("%s inside %s %s (missing End%s?)"
                            % (kw, self.block.kind, self.block.name, self.block.kind))
        encoding: tuple[int, ...] | None = None
        if kw == "Sysreg":
            self.expect(words, 7)
            try:
                encoding = tuple(int(w, 0) for w in words[2:])
            except ValueError:
                raise self.fail("encoding of %s must be five numbers (op0 op1 CRn CRm op2)"
                                % words[1]) from None
        else:
            self.expect(words, 2)
        self.check_name(words[1])
        seen = self.registers if kw == "Sysreg" else self.layouts
        if words[1] in seen:
            raise self.fail("%s %s defined twice (first at line %d)"
                            % (kw, words[1], seen[words[1]].line))
        self.block = _Block(kind=kw, name=words[1], line=self.lineno, encoding=encoding)

    def close_block(self, words: list[str]) -> None:
        kw = words[0]
        self.expect(words, 1)
        block = self.block
        if block is None or "End" + block.kind != kw:
            raise self.fail("%s without %s" % (kw, kw[3:]))
        # gen-sysreg.awk only rejects next_bit > 0; bit 0 may stay undescribed.
        if block.next_bit > 0:
            raise self.fail("bits %d:0 of %s are not described" % (block.next_bit, block.name))
        (self.registers if block.kind == "Sysreg" else self.layouts)[block.name] = block
        self.block = None

    def finish(self) -> dict[str, Register]:
        out: dict[str, Register] = {}
        for name, block in self.registers.items():
            src = block
            if block.uses is not None:
                layout = self.layouts.get(block.uses)
                if layout is None:
                    self.lineno = block.uses_line
                    raise self.fail("Fields %s: no SysregFields %s in this file"
                                    % (block.uses, block.uses))
                src = layout
            out[name] = Register(
                name=name, encoding=block.encoding, width=64,
                fields=tuple(Field(register=name, name=f.name, msb=f.msb, lsb=f.lsb,
                                   aliases=(), polarity=f.polarity, feature=None,
                                   values=f.values, source=f.source) for f in src.fields),
                res0=tuple(src.res0), res1=tuple(src.res1), unkn=tuple(src.unkn),
                source="%s:%d" % (self.source, block.line))
        return out


def parse_sysreg(text: str, source: str = "sysreg") -> dict[str, Register]:
    """Registers described by `text` (tools/sysreg format), by name.

    SysregFields layouts are resolved into the Sysreg blocks that use them
    and are not returned themselves.
    """
    return _Parser(source).run(text)
