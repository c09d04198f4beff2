"""The register model: HCR_EL2 and MDCR_EL2 as data, and KVM's use of them."""

from bot.regmodel.defines import evaluate_defines
from bot.regmodel.load import load_model
from bot.regmodel.model import (
                                Field,
                                FlagSet,
                                FunctionRole,
                                Macro,
                                Polarity,
                                Register,
                                RegisterModel,
                                Role,
                                ValueExpr,
)
from bot.regmodel.sysreg import parse_sysreg

__all__ = ["Field", "FlagSet", "FunctionRole", "Macro", "Polarity", "Register",
           "RegisterModel", "Role", "ValueExpr", "evaluate_defines", "load_model",
           "parse_sysreg"]
