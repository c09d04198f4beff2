"""The kvm_arm.h-style #define evaluator on snippets, as rules feed it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.regmodel import Macro, evaluate_defines, load_model
from bot.regmodel.kvmarm import kernel_macros


def one(text: str, name: str, known: dict[str, Macro] | None = None) -> Macro:
    return evaluate_defines(text, known)[name]


@pytest.mark.parametrize(("line", "value", "msb", "lsb"), [
    ("#define HCR_TGE\t\t(UL(1) << 27)", 1 << 27, 27, 27),
    ("#define HCR_BSU\t\t(3 << 10)", 3 << 10, 11, 10),
    ("#define X GENMASK(63, 37)", ((1 << 27) - 1) << 37, 63, 37),
    ("#define X GENMASK_ULL(13, 12)", 0x3000, 13, 12),
    ("#define X BIT(18)", 1 << 18, 18, 18),
    ("#define X BIT_ULL(50)", 1 << 50, 50, 50),
    ("#define X _BITUL(4)", 16, 4, 4),
    ("#define X (ULL(0x1F))", 0x1F, 4, 0),
    ("#define X (1UL << 31)", 1 << 31, 31, 31),
    ("#define X 0x000032ffUL", 0x32FF, None, None),
    ("#define X (_AC(1, UL) << 12)", 1 << 12, 12, 12),
    ("#define X (~UL(0) >> 1)", (1 << 63) - 1, 62, 0),
    ("#define X (u32)~0", 0xFFFFFFFF, 31, 0),
    ("#define X ((unsigned long)1 << 40)", 1 << 40, 40, 40),
    ("#define X (0b100 | 010)", 4 | 8, 3, 2),
    ("# define X (2 * 3 + 1 - (8 / 4) % 3)", 5, None, None),
    ("#define X (1 ? 7 : 9)", 7, 2, 0),
    ("#define X (-1)", (1 << 64) - 1, 63, 0),
    ("#define X (BIT(3) ^ BIT(2)) & ~BIT(2)", 8, 3, 3),
])
def test_constant_expressions(line: str, value: int, msb: int | None, lsb: int | None) -> None:
    m = one(line, "X" if " X" in line else line.split()[1])
    assert (m.value, m.msb, m.lsb) == (value, msb, lsb)


def test_macros_built_from_macros_in_any_order_with_continuations_and_comments() -> None:
    text = """
/* Hyp bits */
#define HCR_GUEST (HCR_A | \\
                   HCR_B)   /* trailing
                               comment */
#define HCR_A_SHIFT 5
#define HCR_A (UL(1) << HCR_A_SHIFT)  // one bit
#define HCR_B BIT(7)
"""
    got = evaluate_defines(text)
    assert got["HCR_GUEST"].value == (1 << 5) | (1 << 7)
    assert got["HCR_GUEST"].line == 3 and got["HCR_GUEST"].msb is None
    assert got["HCR_GUEST"].expr == "(HCR_A | HCR_B)"
    assert (got["HCR_A"].msb, got["HCR_A"].lsb, got["HCR_A"].line) == (5, 5, 7)
    # A shift is a number, not a bit range.
    assert got["HCR_A_SHIFT"].value == 5 and got["HCR_A_SHIFT"].msb is None


def test_unshifted_mask_with_its_shift_names_the_shifted_bits() -> None:
    got = evaluate_defines("#define MDCR_EL2_E2PB_MASK (UL(0x3))\n"
                           "#define MDCR_EL2_E2PB_SHIFT (UL(12))\n"
                           "#define MDCR_EL2_HPMN_MASK (UL(0x1F))\n"
                           "#define G_MASK GENMASK(13, 12)\n#define G_SHIFT 12\n")
    assert (got["MDCR_EL2_E2PB_MASK"].msb, got["MDCR_EL2_E2PB_MASK"].lsb) == (13, 12)
    assert got["MDCR_EL2_E2PB_MASK"].value == 3
    assert (got["MDCR_EL2_HPMN_MASK"].msb, got["MDCR_EL2_HPMN_MASK"].lsb) == (4, 0)
    assert (got["G_MASK"].msb, got["G_MASK"].lsb) == (13, 12)


def test_known_table_from_an_earlier_fragment_and_from_the_model() -> None:
    header = evaluate_defines("#define HCR_RW_SHIFT 31\n#define HCR_RW (UL(1) << HCR_RW_SHIFT)\n")
    patch = evaluate_defines("#define HCR_HOST_FLAGS (HCR_RW | HCR_E2H)\n"
                             "#define HCR_E2H (UL(1) << 34)\n", header)
    assert set(patch) == {"HCR_HOST_FLAGS", "HCR_E2H"}
    assert patch["HCR_HOST_FLAGS"].value == (1 << 31) | (1 << 34)
    generated = kernel_macros(load_model())
    new_style = evaluate_defines("#define __HCR(x) HCR_EL2_##x\n"
                                 "#define HCR_TID5 __HCR(TID5)\n"
                                 "#define HCR_FLAGS (HCR_TGE | HCR_EL2_E2H)\n", generated)
    assert new_style["__HCR"].params == ("x",) and new_style["__HCR"].value is None
    assert (new_style["HCR_TID5"].value, new_style["HCR_TID5"].msb) == (1 << 58, 58)
    assert new_style["HCR_FLAGS"].value == (1 << 27) | (1 << 34)


def test_a_fragment_definition_replaces_a_known_one() -> None:
    known = evaluate_defines("#define HCR_X BIT(1)\n")
    assert evaluate_defines("#define HCR_X BIT(2)\n", known)["HCR_X"].value == 4


@pytest.mark.parametrize("text", [
    "#define X do { } while (0)",
    "#define X (Y | 1)",                  # Y is defined nowhere
    "#define X (1 << 64)",
    "#define X GENMASK(3, 4)",
    "#define X (1 / 0)",
    "#define X \"text\"",
    "#define X (1 +)",
    "#define X X",                        # refers to itself
    "#define X F(1)",                     # unknown function
    "#define X BIT(1, 2)",
    "#define X",
])
def test_non_constants_get_no_value_and_never_raise(text: str) -> None:
    m = one(text, "X")
    assert (m.value, m.msb, m.lsb) == (None, None, None)


def test_mutual_recursion_is_not_a_value() -> None:
    got = evaluate_defines("#define A (B | 1)\n#define B (A | 2)\n#define C 3\n")
    assert got["A"].value is None and got["B"].value is None and got["C"].value == 3


def test_lines_that_are_not_defines_are_ignored() -> None:
    got = evaluate_defines("#include <asm/sysreg.h>\n#ifdef CONFIG_X\nint x;\n"
                           "#define Y 1\n#endif\n")
    assert list(got) == ["Y"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_body_evaluates_or_yields_none(body: str) -> None:
    got = evaluate_defines("#define X " + body.replace("\n", " ").replace("\\", " "))
    m = got["X"]
    assert m.value is None or 0 <= m.value < 1 << 64


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 63), st.integers(0, 63))
def test_genmask_and_shifts_agree(a: int, b: int) -> None:
    hi, lo = max(a, b), min(a, b)
    m = one("#define X GENMASK(%d, %d)" % (hi, lo), "X")
    assert (m.msb, m.lsb) == (hi, lo)
    assert m.value == one("#define X (((1ULL << (%d - %d)) << 1) - 1) << %d"
                          % (hi, lo, lo), "X").value or hi - lo == 63
