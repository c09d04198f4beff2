"""Just enough C (and arm64 assembly) analysis for the rules: pure, no I/O."""

from bot.parse.csource.facts import (
                                     EMPTY,
                                     WIDTHS,
                                     Access,
                                     Assign,
                                     Decl,
                                     Define,
                                     LineFacts,
                                     RegAccess,
                                     canonical_register,
                                     defines,
                                     line_facts,
                                     mentions_register,
                                     register_kind,
                                     split_args,
                                     strip_comment,
)
from bot.parse.csource.functions import (
                                     FuncSpan,
                                     asm_functions,
                                     attribute,
                                     c_functions,
                                     find_function,
                                     function_spans,
                                     is_asm,
                                     section_function,
)

__all__ = ["EMPTY", "WIDTHS", "Access", "Assign", "Decl", "Define", "FuncSpan", "LineFacts",
           "RegAccess", "asm_functions", "attribute", "c_functions", "canonical_register",
           "defines", "find_function", "function_spans", "is_asm", "line_facts",
           "mentions_register", "register_kind", "section_function", "split_args",
           "strip_comment"]
