"""What a path's conditions say about the values they test
(bot/rules/assume.py), the interpreter's memory mode following a save/restore
pair path by path, and the kvm.toml facts it reads ([constants], [[loaders]])."""

from __future__ import annotations

import pytest

from bot.errors import ConfigError
from bot.regmodel.facts import read_facts
from bot.rules.assume import Assumed, split
from bot.rules.bits import MASK64, Bits
from bot.rules.cexpr import Expr, expr_from_text, expr_text

M = 1  # SCTLR_ELx_M


def _values(**env: Bits):  # type: ignore[no-untyped-def]
    """An evaluator of the few expression shapes these tests use."""
    def value(e: Expr) -> Bits:
        text = expr_text(e).replace(" ", "")
        if text in env:
            return env[text]
        name, _, mask = text.partition("&")
        return env[name] & Bits.const(int(mask, 0))
    return value


def test_a_single_bit_test_fixes_the_bit_on_each_side() -> None:
    val = Bits.source("live:SCTLR_EL1")
    truth, yes, no = split(expr_from_text("!(val & 0x1)"), _values(val=val), Assumed())
    assert truth is None
    # Where !(val & M) holds, M is 0; where it does not, M is 1.
    assert yes.apply(val).zeros & M and not yes.apply(val).ones & M
    assert no.apply(val).ones & M
    # A later test of the same bit of the same source is decided.
    saved = val | Bits.const(0)
    assert split(expr_from_text("saved & 0x1"), _values(saved=saved), yes)[0] is False
    assert split(expr_from_text("saved & 0x1"), _values(saved=saved), no)[0] is True


def test_a_pointer_test_is_remembered_as_non_zero_or_zero() -> None:
    vcpu = Bits.source("load:host_ctxt.__hyp_running_vcpu")
    truth, yes, no = split(expr_from_text("vcpu"), _values(vcpu=vcpu), Assumed())
    assert truth is None
    assert split(expr_from_text("!vcpu"), _values(vcpu=vcpu), yes)[0] is False
    assert split(expr_from_text("vcpu"), _values(vcpu=vcpu), no)[0] is False
    assert no.apply(vcpu).value == 0


def test_several_bits_tell_only_the_false_side() -> None:
    val = Bits.source("live:TCR_EL1")
    mask = (1 << 7) | (1 << 23)
    _, yes, no = split(expr_from_text("val & %#x" % mask), _values(val=val), Assumed())
    assert yes == Assumed()          # some bit of two set: neither is known
    assert no.apply(val).zeros & mask == mask


def test_and_or_conditions_narrow_only_what_they_decide() -> None:
    env = _values(a=Bits.source("param:a"), b=Bits.source("param:b"))
    _, yes, no = split(expr_from_text("a && b"), env, Assumed())
    assert "param:a" in yes.nonzero and "param:b" in yes.nonzero
    assert no == Assumed()           # which of the two failed is not known
    _, yes, no = split(expr_from_text("a || b"), env, Assumed())
    assert yes == Assumed()
    assert no.apply(Bits.source("param:a")).value == 0


def test_contradicting_assumptions_are_not_compatible() -> None:
    set_ = Assumed().with_bits("live:SCTLR_EL1", 0, M)
    clear = Assumed().with_bits("live:SCTLR_EL1", M, 0)
    assert not set_.compatible(clear)
    assert set_.compatible(Assumed().with_nonzero("param:mmu"))
    assert set_.meet(clear) == Assumed()
    gone = Assumed().with_bits("param:mmu", MASK64, 0)
    assert not gone.compatible(Assumed().with_nonzero("param:mmu"))


@pytest.mark.parametrize("raw, problem", [
    ({"constants": {"source": "s", "BAD NAME": "1"}}, "constants.BAD NAME: not a C identifier"),
    ({"loaders": [{"function": "f", "registers": ["VTTBR_EL2"], "arg": -1, "source": "s"}]},
     "loaders[0].arg: expected an argument position"),
    ({"loaders": [{"function": "f", "source": "s"}]}, "loaders[0].registers"),
    ({"loaders": [{"function": "f", "registers": ["X"], "writes": 1, "source": "s"}]},
     "loaders[0].writes: unknown key"),
])
def test_constants_and_loaders_name_the_bad_key(raw: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        read_facts(raw, {"s": "a source"}, "kvm.toml")


def test_the_shipped_facts_know_the_stage2_loaders_and_sctlr_m() -> None:
    from bot.regmodel import load_model
    from bot.regmodel.evaluate import Evaluator
    model = load_model()
    assert set(model.facts.loaders) >= {"__load_stage2", "__load_host_stage2"}
    assert model.facts.loaders["__load_stage2"].arg == 0
    ev = Evaluator(model)
    assert ev.value("SCTLR_ELx_M") == 1
    assert ev.value("TCR_EPD1_MASK | TCR_EPD0_MASK") == (1 << 23) | (1 << 7)
