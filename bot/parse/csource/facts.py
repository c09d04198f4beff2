"""What one line of C or arm64 assembly does to system registers: pure.

Each line is read with a handful of regular expressions, because nearly
every line of a patch is irrelevant and has to cost next to nothing.  The
facts recorded are the ones the rules reason about: register reads and
writes (``read_sysreg``/``write_sysreg`` and their ``_s``/``_elN``
variants, ``sysreg_clear_set``, ``msr``/``mrs`` in ``.S`` files and in
inline assembly), ``isb``, interrupt masking, preemption and per-CPU
accesses, assignments to the saved copies of HCR_EL2/MDCR_EL2
(``vcpu->arch.hcr_el2``, ``*vcpu_hcr(vcpu)``, host copies) and declarations
whose type decides how many bits of such a value survive.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

# Register operand of an accessor: hcr_el2, SYS_MDCR_EL2, ... (never ICH_HCR_EL2:
# the GIC's hypervisor control register shares the suffix, not the meaning).
_ACCESS = re.compile(r"\b(read_sysreg|write_sysreg|sysreg_clear_set)(_s|_el[012]|_hw)?\s*\(")
_ASM = re.compile(r"(?:^|[\s\"';:])(msr|mrs)(_s)?\s+(%?\[?\w+\]?)\s*,\s*(%?\[?\w+\]?)", re.I)
_ISB = re.compile(r"\bisb\b")
_IRQ = re.compile(r"\b(local_irq_save|local_irq_restore|local_irq_disable|local_irq_enable|"
                  r"local_daif_mask|local_daif_restore)\b")
_PREEMPT = re.compile(r"\b(preempt_disable|preempt_enable|get_cpu|put_cpu|"
                      r"migrate_disable|migrate_enable)\s*\(")
_PERCPU = re.compile(r"\b(__this_cpu_read|__this_cpu_write|this_cpu_read|this_cpu_write|"
                     r"this_cpu_ptr|per_cpu_ptr|per_cpu|host_data_ptr|"
                     r"__hyp_this_cpu_ptr|__hyp_this_cpu_read)\s*\(")
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)(\([^)]*\))?\s*(.*?)\s*$")
_ASSIGN = re.compile(
    r"(?P<target>(?:\*\s*)?[A-Za-z_][\w.>\[\]()&*-]*?)\s*(?P<op>\|=|&=|\^=|=)(?!=)\s*(?P<value>[^;]*)")
_TYPES = (r"u8|u16|u32|u64|s32|s64|__u32|__u64|uint8_t|uint16_t|uint32_t|uint64_t|"
          r"unsigned\s+long\s+long|unsigned\s+long|unsigned\s+int|unsigned|long\s+long|"
          r"long|int|short|unsigned\s+short|char")
_DECL = re.compile(r"(?:^|[\s(,;{])(?:const\s+|static\s+|volatile\s+|register\s+)*"
                   r"(?P<type>" + _TYPES + r")\s+(?:__[a-z]\w*\s+|\*\s*)*(?P<name>[A-Za-z_]\w*)\s*"
                   r"(?P<after>[;=,)\[(])")
_REG_WORD = re.compile(r"(?i)(?<![a-z0-9_])(?:sys_)?(hcr_el2|mdcr_el2)(?![a-z0-9_])")
_VALUE_NAME = re.compile(r"(?i)(?<![a-z])(hcr|mdcr)")
_IGNORED_NAME = re.compile(r"(?i)ich_hcr|vgic_hcr|ich_|cnthctl|hcrx")

WIDTHS = {"u8": 8, "u16": 16, "u32": 32, "u64": 64, "s32": 32, "s64": 64, "__u32": 32,
          "__u64": 64, "uint8_t": 8, "uint16_t": 16, "uint32_t": 32, "uint64_t": 64,
          "unsigned long long": 64, "unsigned long": 64, "unsigned int": 32, "unsigned": 32,
          "long long": 64, "long": 64, "int": 32, "short": 16, "unsigned short": 16,
          "char": 8}


class Access(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    CLEAR_SET = "clear-set"


@dataclass(frozen=True, slots=True, kw_only=True)
class RegAccess:
    """A read or write of a system register on one line."""

    kind: Access
    register: str          # canonical upper-case name: HCR_EL2, MDCR_EL2, SCTLR_EL1, ...
    value: str = ""        # the written expression, or the asm source/destination register
    clear: str = ""        # sysreg_clear_set: bits cleared
    set: str = ""          # sysreg_clear_set: bits set
    asm: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign:
    """An assignment to a variable or field that holds an HCR_EL2/MDCR_EL2 value."""

    target: str
    op: str                # "=", "|=", "&=", "&=~", "^="
    value: str
    register: str          # HCR_EL2 or MDCR_EL2
    host: bool             # a host copy (per-CPU, init params, host context)
    vcpu: bool             # the vcpu's copy (vcpu->arch.*, vcpu_hcr())


@dataclass(frozen=True, slots=True, kw_only=True)
class Decl:
    """A declaration whose name says it holds an HCR_EL2/MDCR_EL2 value."""

    type: str
    width: int
    name: str
    register: str
    function: bool         # a function's return type, not a variable
    from_value: bool = False  # the name says nothing; the initialiser reads the register


@dataclass(frozen=True, slots=True, kw_only=True)
class LineFacts:
    """What one line of C does to registers: accesses, assignments, barriers, masking."""

    accesses: tuple[RegAccess, ...] = ()
    assigns: tuple[Assign, ...] = ()
    decls: tuple[Decl, ...] = ()
    isb: bool = False
    irq: tuple[str, ...] = ()
    preempt: tuple[str, ...] = ()
    percpu: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.accesses or self.assigns or self.decls or self.isb or self.irq
                    or self.preempt or self.percpu)

    def writes(self, register: str) -> tuple[RegAccess, ...]:
        return tuple(a for a in self.accesses
                     if a.register == register and a.kind is not Access.READ)

    def reads(self, register: str) -> tuple[RegAccess, ...]:
        return tuple(a for a in self.accesses if a.register == register and a.kind is Access.READ)


EMPTY = LineFacts()


def canonical_register(operand: str) -> str:
    """`hcr_el2`, `SYS_HCR_EL2` -> `HCR_EL2`."""
    name = operand.strip().upper()
    if name.startswith("SYS_"):
        name = name[4:]
    return name


def split_args(text: str, start: int) -> tuple[list[str], int]:
    """Arguments of the call whose '(' is at text[start-1]; (args, end index).

    A call cut by the end of the line returns the arguments seen so far.
    """
    depth, i = 0, start
    cur: list[str] = []
    args: list[str] = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
            depth -= 1
        elif ch == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(ch)
        i += 1
    if cur:
        args.append("".join(cur).strip())
    return args, n


def register_kind(name: str) -> str | None:
    """HCR_EL2/MDCR_EL2 when a variable or field name says it holds one."""
    if _IGNORED_NAME.search(name):
        return None
    m = _VALUE_NAME.search(name)
    if m is None:
        return None
    return "HCR_EL2" if m.group(1).lower() == "hcr" else "MDCR_EL2"


def _accesses(text: str, asm_file: bool) -> list[RegAccess]:
    out: list[RegAccess] = []
    for m in _ACCESS.finditer(text):
        args, _ = split_args(text, m.end())
        func = m.group(1)
        if func == "read_sysreg" and args:
            out.append(RegAccess(kind=Access.READ, register=canonical_register(args[0])))
        elif func == "write_sysreg" and len(args) >= 2:
            out.append(RegAccess(kind=Access.WRITE, register=canonical_register(args[-1]),
                                 value=",".join(args[:-1]).strip()))
        elif func == "sysreg_clear_set" and args:
            out.append(RegAccess(kind=Access.CLEAR_SET, register=canonical_register(args[0]),
                                 clear=args[1] if len(args) > 1 else "",
                                 set=args[2] if len(args) > 2 else ""))
    if asm_file or "msr" in text or "mrs" in text:
        code = text.split("//", 1)[0] if asm_file else text
        for m in _ASM.finditer(code):
            op, a, b = m.group(1).lower(), m.group(3), m.group(4)
            if op == "msr":
                out.append(RegAccess(kind=Access.WRITE, register=canonical_register(a), value=b,
                                     asm=True))
            else:
                out.append(RegAccess(kind=Access.READ, register=canonical_register(b), value=a,
                                     asm=True))
    return out


def _assigns(text: str) -> list[Assign]:
    out: list[Assign] = []
    for m in _ASSIGN.finditer(text):
        target = m.group("target").strip()
        reg = register_kind(target)
        if reg is None:
            continue
        if target.startswith(("if", "while", "return")) or "==" in target:
            continue
        op, value = m.group("op"), m.group("value").strip()
        if op == "&=" and value.startswith("~"):
            op, value = "&=~", value[1:].strip()
        low = target.lower()
        vcpu = "vcpu" in low and "host" not in low
        host = any(k in low for k in ("host", "init_params", "params", "this_cpu", "per_cpu"))
        out.append(Assign(target=" ".join(target.split()), op=op, value=value, register=reg,
                          host=host, vcpu=vcpu))
    return out


_NOT_VALUE = {"insn", "idx", "index", "shift", "offset", "nr", "bit", "bits", "count", "num",
              "cpu", "id", "off", "pos", "gen", "mov", "str", "name", "fmt", "ptr"}


def _value_name(name: str, function: bool) -> bool:
    """The name says it holds (or returns) a register value: mdcr_el2,
    host_hcr, __kvm_get_mdcr_el2 -- not __gen_mov_hcr_insn or hcr_shift."""
    parts = [p for p in name.lower().split("_") if p]
    if "hcr" not in parts and "mdcr" not in parts:
        return False
    if function:
        return parts[-1] in ("hcr", "mdcr") or parts[-2:] in (["hcr", "el2"], ["mdcr", "el2"])
    return not _NOT_VALUE & set(parts)


def _decls(text: str) -> list[Decl]:
    out: list[Decl] = []
    for m in _DECL.finditer(text):
        name = m.group("name")
        reg = register_kind(name) if _value_name(name, m.group("after") == "(") else None
        from_value = False
        if reg is None and m.group("after") == "=":
            reg = register_kind(text[m.end():].split(";", 1)[0])
            from_value = reg is not None
        if reg is None:
            continue
        typ = " ".join(m.group("type").split())
        out.append(Decl(type=typ, width=WIDTHS[typ], name=name, register=reg,
                        function=m.group("after") == "(", from_value=from_value))
    return out


# The same lines come back in every revision and pull request of a series
# (and `}` or `return 0;` everywhere): each worked out once (bounded).
@functools.lru_cache(maxsize=4096)
def line_facts(text: str, *, asm_file: bool = False) -> LineFacts:
    """The register facts of one source line (comments are not removed here:
    callers pass code, and a register named in a comment is not accessed)."""
    low = text.lower()
    if asm_file:
        stripped = text.split("//", 1)[0]
        low = stripped.lower()
    has_reg = "sysreg" in low or "msr" in low or "mrs" in low
    accesses = _accesses(text, asm_file) if has_reg else []
    assigns = _assigns(text) if ("hcr" in low or "mdcr" in low) and "=" in text else []
    decls = _decls(text) if ("hcr" in low or "mdcr" in low) else []
    isb = bool(_ISB.search(low)) if "isb" in low else False
    irq = tuple(m.group(1) for m in _IRQ.finditer(text)) if "local_" in low else ()
    preempt = tuple(m.group(1) for m in _PREEMPT.finditer(text)) if (
        "preempt" in low or "_cpu" in low or "migrate" in low) else ()
    percpu = tuple(m.group(1) for m in _PERCPU.finditer(text)) if (
        "cpu" in low or "host_data" in low) else ()
    if not (accesses or assigns or decls or isb or irq or preempt or percpu):
        return EMPTY
    return LineFacts(accesses=tuple(accesses), assigns=tuple(assigns), decls=tuple(decls),
                     isb=isb, irq=irq, preempt=preempt, percpu=percpu)


@dataclass(frozen=True, slots=True, kw_only=True)
class Define:
    """One #define of a source text, continuation lines joined."""

    name: str
    params: str
    expr: str
    line: int
    text: str              # the whole definition, continuation lines joined


def defines(lines: list[tuple[int, str]]) -> list[Define]:
    """`#define`s among numbered lines, with backslash continuations joined."""
    out: list[Define] = []
    i, n = 0, len(lines)
    while i < n:
        no, text = lines[i]
        m = _DEFINE.match(text)
        if m is None or "define" not in text:
            i += 1
            continue
        parts = [text.rstrip()]
        while parts[-1].endswith("\\") and i + 1 < n:
            i += 1
            parts.append(lines[i][1].rstrip())
        joined = " ".join(p.rstrip("\\").strip() for p in parts)
        jm = _DEFINE.match(joined)
        if jm is not None:
            out.append(Define(name=jm.group(1), params=jm.group(2) or "",
                              expr=strip_comment(jm.group(3)), line=no, text=joined))
        i += 1
    return out


_COMMENT = re.compile(r"/\*.*?\*/|//.*$")


def strip_comment(text: str) -> str:
    return _COMMENT.sub("", text).strip()


def mentions_register(text: str) -> str | None:
    """HCR_EL2/MDCR_EL2 when the text names the register itself (any case)."""
    m = _REG_WORD.search(text)
    return m.group(1).upper() if m else None
