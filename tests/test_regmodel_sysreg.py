"""The tools/sysreg parser on small handwritten snippets."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import BadInput
from bot.regmodel import parse_sysreg

GOOD = """\
# a comment, then a blank line

Sysreg	TOY_EL2	3	4	1	1	7
Res0	63:32
Field	31	TRAPX
UnsignedEnum	30:29	MODE
	0b00	OFF
	0b01	IS
	0b11	FS
EndEnum
SignedEnum	28:25	SGN
	0b1111	NI
EndEnum
Enum	24:24	ONE
	0b1	IMP
EndEnum
Res1	23:20
Unkn	19:16
Raz	15:8
Field	7:0	COUNT
EndSysreg

SysregFields	SHARED
Res0	63:2
Field	1	B
Field	0	A
EndSysregFields

Sysreg	USES_EL1	3	0	2	0	1
Fields	SHARED
EndSysreg
"""


def test_parses_every_statement() -> None:
    regs = parse_sysreg(GOOD, "toy")
    assert set(regs) == {"TOY_EL2", "USES_EL1"}
    toy = regs["TOY_EL2"]
    assert toy.encoding == (3, 4, 1, 1, 7)
    assert [(f.name, f.msb, f.lsb) for f in toy.fields] == [
        ("TRAPX", 31, 31), ("MODE", 30, 29), ("SGN", 28, 25), ("ONE", 24, 24),
        ("COUNT", 7, 0)]
    assert toy.field("mode").values == (("OFF", 0), ("IS", 1), ("FS", 3))
    assert toy.res0 == ((63, 32),) and toy.res1 == ((23, 20),) and toy.unkn == ((19, 16),)
    assert toy.res0_mask == 0xFFFFFFFF00000000 and toy.res1_mask == 0xF00000
    # Raz bits are described but belong to no field and no mask.
    assert not any(f.mask & 0xFF00 for f in toy.fields)
    assert toy.field("TRAPX").source == "toy:5"
    assert toy.source == "toy:3"


def test_fields_blocks_are_resolved_into_the_register() -> None:
    uses = parse_sysreg(GOOD, "toy")["USES_EL1"]
    assert [(f.register, f.name, f.msb) for f in uses.fields] == [
        ("USES_EL1", "B", 1), ("USES_EL1", "A", 0)]
    assert uses.res0 == ((63, 2),)
    assert uses.encoding == (3, 0, 2, 0, 1)


def _block(body: str) -> str:
    return "Sysreg\tX_EL1\t3\t0\t0\t0\t0\n" + body + "EndSysreg\n"


@pytest.mark.parametrize(("text", "line", "message"), [
    (_block("Res0\t63:1\nField\t1\tA\n"), 3, "X_EL1.A starts at bit 1, expected 0"),
    (_block("Res0\t63:8\n"), 3, "bits 7:0 of X_EL1 are not described"),
    (_block("Res0\t63:0\nRes0\t0\n"), 3, "starts at bit 0, expected -1"),
    (_block("Field\t64:0\tA\n"), 2, "invalid bit range '64:0'"),
    (_block("Field\t3:7\tA\n"), 2, "invalid bit range '3:7'"),
    (_block("Field\t63\n"), 2, "Field takes 2 arguments, found 1"),
    (_block("Res0\t63:1\nFeild\t0\tA\n"), 3, "unknown statement 'Feild'"),
    (_block("Field\t63:1\tA\nField\t0\tA\n"), 3, "field A defined twice"),
    (_block("Field\t63:62\tA\nEnum\t61:0\tB\n\t0b1111\tX\n\t0b1x\tY\nEndEnum\n"), 5,
     "expected a 0b... value or EndEnum"),
    (_block("Enum\t63:62\tB\n\t0b111\tX\nEndEnum\nRes0\t61:0\n"), 3,
     "value 0b111 does not fit the 2-bit field B"),
    ("Sysreg\tX_EL1\t3\t0\t0\t0\n", 1, "Sysreg takes 6 arguments, found 5"),
    ("Sysreg\tX_EL1\t3\t0\t0\t0\tz\n", 1, "encoding of X_EL1 must be five numbers"),
    ("Field\t0\tA\n", 1, "Field outside a Sysreg or SysregFields block"),
    ("EndSysreg\n", 1, "EndSysreg without Sysreg"),
    (_block("Res0\t63:0\n") + _block("Res0\t63:0\n"), 4, "Sysreg X_EL1 defined twice"),
    ("Sysreg\tX_EL1\t3\t0\t0\t0\t0\nRes0\t63:0\n", 2, "missing EndSysreg for X_EL1"),
    ("Sysreg\tX_EL1\t3\t0\t0\t0\t0\nSysreg\tY_EL1\t3\t0\t0\t0\t1\n", 2,
     "Sysreg inside Sysreg X_EL1"),
    (_block("Enum\t63:0\tB\n\t0b0\tX\n"), 4, "missing EndEnum for B before EndSysreg"),
    (_block("EndEnum\n"), 2, "EndEnum without Enum"),
    (_block("Fields\tNOPE\n"), 2, "Fields NOPE: no SysregFields NOPE in this file"),
    (_block("Field\t63\tA\nFields\tS\n"), 3, "Fields S after fields of X_EL1"),
    ("SysregFields\tS\nRes0\t63:0\nFields\tT\nEndSysregFields\n", 3,
     "Fields is only allowed inside a Sysreg block"),
    (_block("Field\t63:0\t9A\n"), 2, "invalid name '9A'"),
])
def test_malformed_input_names_source_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(BadInput) as err:
        parse_sysreg(text, "snippet")
    assert str(err.value).startswith("snippet:%d: " % line)
    assert message in str(err.value)


def test_an_unterminated_enum_is_reported_at_end_of_input() -> None:
    text = "Sysreg\tX_EL1\t3\t0\t0\t0\t0\nEnum\t63:0\tB\n\t0b0\tX\n"
    with pytest.raises(BadInput, match=r"^t:3: missing EndEnum for B$"):
        parse_sysreg(text, "t")


def test_bit_zero_may_stay_undescribed_as_in_gen_sysreg_awk() -> None:
    reg = parse_sysreg(_block("Res0\t63:1\n"), "t")["X_EL1"]
    assert reg.res0 == ((63, 1),) and reg.fields == ()


@st.composite
def _layouts(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """A random partition of bits 63..0 into Field/Res0/Res1 statements."""
    cuts = sorted(draw(st.sets(st.integers(1, 63), max_size=20)), reverse=True)
    bounds = [64] + cuts + [0]
    kinds = st.sampled_from(["Field", "Field", "Res0", "Res1"])
    return [(draw(kinds), hi - 1, lo) for hi, lo in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None)
@given(_layouts())
def test_any_complete_layout_round_trips(layout: list[tuple[str, int, int]]) -> None:
    lines = []
    for i, (kind, msb, lsb) in enumerate(layout):
        bits = str(msb) if msb == lsb else "%d:%d" % (msb, lsb)
        lines.append("%s\t%s\tF%d" % (kind, bits, i) if kind == "Field" else
                     "%s\t%s" % (kind, bits))
    reg = parse_sysreg(_block("\n".join(lines) + "\n"), "gen")["X_EL1"]
    fields = [(msb, lsb) for kind, msb, lsb in layout if kind == "Field"]
    assert [(f.msb, f.lsb) for f in reg.fields] == fields
    mask = reg.res0_mask | reg.res1_mask | reg.field_mask
    assert mask == (1 << 64) - 1
    assert reg.res0_mask & reg.res1_mask == 0 and reg.field_mask & reg.res0_mask == 0


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("SysregEndFieldRes01:23456 \t\n#b")), max_size=120))
def test_garbage_never_raises_anything_but_bad_input(text: str) -> None:
    try:
        parse_sysreg(text, "fuzz")
    except BadInput as exc:
        assert str(exc).startswith("fuzz:")
