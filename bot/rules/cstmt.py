"""Statements of C function bodies, from whole functions or hunk fragments.

The data the value analysis works on; bot.rules.stmtparse makes it from
text (see `bot.rules.cexpr` for why and what it promises: no raise,
fragments welcome). A `Function` is what the value analysis interprets: its
name, parameters, body statements with their line numbers, and whether the
text held the whole function (its signature and its closing brace) or a
fragment of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.rules.cexpr import Expr


@dataclass(frozen=True, slots=True)
class Block:
    """A compound statement."""

    stmts: tuple[Stmt, ...]
    line: int


@dataclass(frozen=True, slots=True)
class If:
    """An if statement, with its else branch if any."""

    cond: Expr
    then: Stmt
    other: Stmt | None
    line: int
    cond_end: int = 0      # the line the condition ends on


@dataclass(frozen=True, slots=True)
class Loop:
    """A for, while or do loop."""

    kind: str          # for, while, do
    cond: Expr
    body: Stmt
    line: int


@dataclass(frozen=True, slots=True)
class Switch:
    """A switch statement."""

    expr: Expr
    body: Stmt
    line: int


@dataclass(frozen=True, slots=True)
class Return:
    """A return statement."""

    value: Expr | None
    line: int
    end: int = 0


@dataclass(frozen=True, slots=True)
class Jump:
    """A break, continue or goto."""

    kind: str          # break, continue, goto
    line: int


@dataclass(frozen=True, slots=True)
class Declarator:
    """One name a declaration declares, with its initialiser."""

    name: str
    init: Expr | None
    pointer: bool
    array: bool


@dataclass(frozen=True, slots=True)
class Decl:
    """A declaration of one or more variables of a type."""

    type: str
    names: tuple[Declarator, ...]
    line: int
    end: int = 0


@dataclass(frozen=True, slots=True)
class ExprStmt:
    """An expression statement."""

    expr: Expr
    line: int
    end: int


@dataclass(frozen=True, slots=True)
class Asm:
    """An inline assembler statement."""

    text: str          # the string literals and operands, joined
    line: int


@dataclass(frozen=True, slots=True)
class Preproc:
    """A preprocessor line inside a function."""

    text: str
    line: int


@dataclass(frozen=True, slots=True)
class Label:
    """A goto label."""

    name: str
    line: int


Stmt = Block | If | Loop | Switch | Return | Jump | Decl | ExprStmt | Asm | Preproc | Label


# -- functions --------------------------------------------------------------------



@dataclass(frozen=True, slots=True, kw_only=True)
class Param:
    """One parameter of a function definition."""

    type: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Function:
    """A C function as far as the text shows it."""

    name: str
    path: str
    params: tuple[Param, ...]
    returns: str                 # return type text ("" when the signature is not seen)
    qualifiers: tuple[str, ...]  # static, inline, __always_inline, ...
    body: tuple[Stmt, ...]
    start: int                   # first line (the signature's, or the fragment's)
    end: int
    has_start: bool              # the signature is in the text
    has_end: bool                # the closing brace is in the text
    gaps: bool = False           # lines between start and end are missing (two hunks)

    @property
    def complete(self) -> bool:
        return self.has_start and self.has_end and not self.gaps

    @property
    def seen_from_start(self) -> bool:
        """Every line from the signature on is in the text (as far as it goes)."""
        return self.has_start and not self.gaps

    @property
    def inline(self) -> bool:
        return any("inline" in q for q in self.qualifiers)

    @property
    def static(self) -> bool:
        return "static" in self.qualifiers


# The call standing for a function's lines no hunk shows (bot.rules.stmtparse.function_from_lines).
UNSEEN = "__lines_not_in_the_patch__"


def walk(stmts: tuple[Stmt, ...] | list[Stmt]) -> list[Stmt]:
    """Every statement, nested ones included, in source order."""
    out: list[Stmt] = []
    stack: list[Stmt] = list(reversed(stmts))
    while stack:
        stmt = stack.pop()
        out.append(stmt)
        children: list[Stmt] = []
        if isinstance(stmt, Block):
            children = list(stmt.stmts)
        elif isinstance(stmt, If):
            children = [stmt.then] + ([stmt.other] if stmt.other is not None else [])
        elif isinstance(stmt, (Loop, Switch)):
            children = [stmt.body]
        stack.extend(reversed(children))
    return out
