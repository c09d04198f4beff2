"""The shape of the code base, enforced: the layer table below is the one
place that says which module may import which.

Every module under bot/ belongs to exactly one layer; a module may import
(at the top, inside a function, or under TYPE_CHECKING) only modules of
the layers its own layer lists. Data flows input -> parse -> regmodel ->
rules -> drafts -> store, and the orchestration on top runs a thread
through them; the pure stages never import I/O libraries, and only
bot/lore talks to b4 and liblore. Import cycles between bot modules are
refused too. Every fixture file is read by some test.
"""

from __future__ import annotations

import ast
import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# layer: (modules, by fnmatch pattern; layers it may import)
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # Shared by everything: errors, configuration, the pipeline's data types.
    "base": (("bot", "bot.errors", "bot.config", "bot.data"), ("base",)),
    # Reading mail (files, stdin, lore over HTTP), grouping it into threads,
    # reading a kernel git repository (bot.kernel: base inference, whole files).
    "input": (("bot.sources", "bot.threads", "bot.lore", "bot.lore.client",
               "bot.lore.prefetch", "bot.kernel",
               "bot.kernel.*"),
              ("base", "input")),
    # Mail and diffs into our types; b4's series assembly (and the modules b4
    # loads that it does not need, deferred); C source facts.
    "parse": (("bot.parse", "bot.parse.*", "bot.lore.assemble", "bot.lore.deferred"),
              ("base", "parse")),
    # HCR_EL2/MDCR_EL2 as data, and KVM's use of them.
    "regmodel": (("bot.regmodel", "bot.regmodel.*"), ("base", "parse", "regmodel")),
    # The rules engine: pure checks over the parsed series and the model.
    "rules": (("bot.rules", "bot.rules.*"), ("base", "parse", "regmodel", "rules")),
    # Re-review: a revision's findings against the earlier revision's.
    "revisions": (("bot.revisions",), ("base", "revisions")),
    # Reply drafts rendered from findings.
    "drafts": (("bot.drafts", "bot.drafts.*"), ("base", "parse", "drafts")),
    # The database: models, migrations, queries.
    "store": (("bot.store", "bot.store.*"), ("base", "revisions", "store")),
    # Orchestration and interfaces on top: may use every layer but the web.
    "top": (("bot.pipeline", "bot.rulepool", "bot.check", "bot.report",
             "bot.poller", "bot.daemon", "bot.history",
             "bot.output", "bot.output.*", "bot.b4check", "bot.baseline",
             "bot.workflow", "bot.outbox", "bot.draftcmd", "bot.b4export",
             "bot.runner", "bot.status", "bot.sdnotify", "bot.accounts", "bot.feedback",
             "bot.usercmd"),
            ("base", "input", "parse", "regmodel", "rules", "revisions", "drafts", "store",
             "top")),
    # The dashboard sits on top of everything (the store, the draft workflow);
    # nothing imports it but the command line.
    "web": (("bot.web", "bot.web.*"),
            ("base", "input", "parse", "regmodel", "rules", "revisions", "drafts", "store",
             "top", "web")),
    "cli": (("bot.__main__", "bot.cli"),
            ("base", "input", "parse", "regmodel", "rules", "revisions", "drafts", "store",
             "top", "web", "cli")),
}

# Third-party modules a layer must never import.
IO_LIBRARIES = ("sqlalchemy", "alembic", "psycopg", "requests", "urllib3", "b4", "liblore",
                "flask", "werkzeug", "waitress")
FORBIDDEN_THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "base": IO_LIBRARIES,
    "parse": IO_LIBRARIES,
    "regmodel": IO_LIBRARIES,
    "rules": IO_LIBRARIES,
    "revisions": IO_LIBRARIES,
    "drafts": IO_LIBRARIES,
}
# The b4 boundary: the only modules that may import b4 or liblore.
B4_MODULES = ("bot.lore.*",)


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    for layer, (patterns, _) in LAYERS.items():
        if any(fnmatch.fnmatchcase(module, p) for p in patterns):
            return layer
    return None


def _imports(tree: ast.AST, module: str, is_package: bool,
             known: set[str] | dict[str, object]) -> list[tuple[int, str]]:
    """Every import in the module (top level, in functions, under
    TYPE_CHECKING), as (line, absolute dotted name). `from pkg import sub`
    names the submodule only; `from pkg import name` names the package."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = ["%s.%s" % (target, alias.name) for alias in node.names]
            out.extend((node.lineno, sub) for sub in subs if sub in known)
            if any(sub not in known for sub in subs):
                out.append((node.lineno, target))
    return out


def _modules(root: Path) -> dict[str, tuple[Path, ast.AST, bool]]:
    out = {}
    for path in sorted((root / "bot").rglob("*.py")):
        name = module_name(root, path)
        out[name] = (path, ast.parse(path.read_text(), str(path)), path.name == "__init__.py")
    return out


def violations(root: Path) -> list[str]:
    """What breaks the layer table in the tree at `root` (empty when nothing)."""
    modules = _modules(root)
    problems: list[str] = []
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, tree, is_package) in modules.items():
        rel = path.relative_to(root)
        layer = layer_of(name)
        if layer is None:
            problems.append("%s: module %s is in no layer of tests/test_layout.py" % (rel, name))
            continue
        allowed = LAYERS[layer][1]
        for line, target in _imports(tree, name, is_package, modules):
            top = target.split(".")[0]
            if top == "bot":
                if target not in modules:
                    continue  # `from bot.x import name`: the module itself is listed too
                if target != name:
                    graph[name].add(target)
                target_layer = layer_of(target)
                if target_layer is not None and target_layer not in allowed:
                    problems.append("%s:%d: %s (%s) imports %s (%s)"
                                    % (rel, line, name, layer, target, target_layer))
                continue
            if top in ("b4", "liblore") and not any(fnmatch.fnmatchcase(name, p)
                                                    for p in B4_MODULES):
                problems.append("%s:%d: %s imports %s outside bot/lore" % (rel, line, name, top))
            elif top in FORBIDDEN_THIRD_PARTY.get(layer, ()) and not (
                    top in ("b4", "liblore") and any(fnmatch.fnmatchcase(name, p)
                                                     for p in B4_MODULES)):
                problems.append("%s:%d: %s (%s) imports the I/O library %s"
                                % (rel, line, name, layer, top))
    problems.extend(_cycles(graph))
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Import cycles between bot modules (a package importing its own
    submodules is how packages work, not a cycle; the reverse is)."""
    edges = {m: {t for t in targets if not t.startswith(m + ".")} for m, targets in graph.items()}
    found: list[str] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                found.append("import cycle: " + " -> ".join(cycle))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_every_import_follows_the_layer_table():
    assert violations(ROOT) == []


@pytest.mark.parametrize("module, planted, expected", [
    ("bot/parse/diff.py", "from bot.sources import InputSet", "(parse) imports bot.sources (input)"),
    ("bot/regmodel/model.py", "def _f():\n    import bot.report", "(regmodel) imports bot.report"),
    ("bot/rules/core.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
     "    from bot.store.models import Finding", "(rules) imports bot.store.models (store)"),
    ("bot/store/queries.py", "from bot.pipeline import Checker", "(store) imports bot.pipeline"),
    ("bot/drafts/render.py", "import sqlalchemy", "imports the I/O library sqlalchemy"),
    ("bot/drafts/quote.py", "from bot.store import drafts", "(drafts) imports bot.store.drafts"),
    ("bot/check.py", "import b4", "imports b4 outside bot/lore"),
    ("bot/threads.py", "from bot import sources", "import cycle"),
    ("bot/newstage.py", "", "is in no layer"),
    ("bot/workflow.py", "def _f():\n    from bot.web import app", "(top) imports bot.web.app (web)"),
    ("bot/store/queries.py", "import bot.web", "(store) imports bot.web (web)"),
])
def test_the_layer_test_fails_on_a_planted_import(tmp_path, module, planted, expected):
    shutil.copytree(ROOT / "bot", tmp_path / "bot",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / module
    text = target.read_text() if target.exists() else ""
    target.write_text(text + "\n" + planted + "\n")
    found = violations(tmp_path)
    assert any(expected in v for v in found), found


PURE = ["bot.data", "bot.threads", "bot.parse.mail", "bot.parse.diff", "bot.parse.csource",
        "bot.rules", "bot.regmodel", "bot.revisions", "bot.drafts"]


def test_pure_stages_load_no_io_libraries():
    """The same rule at run time: importing the pure stages loads none of
    the I/O libraries, not even through a third-party package."""
    code = ("import sys\n" + "".join("import %s\n" % m for m in PURE) +
            "print(' '.join(sorted(m for m in %r if m in sys.modules)))" % (IO_LIBRARIES,))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_no_sys_exit_below_the_cli():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "bot").rglob("*.py")
                 if "sys.exit(" in p.read_text() and p.name not in ("cli.py", "__main__.py")]
    assert offenders == []


# Directories whose every file a test reads by globbing them (the test named).
GLOBBED = {
    "fuzz": "tests/test_hostile.py",
    "threads": "tests/test_check.py",
    "labelled": "tests/test_rules_labelled.py",
    "rules": "tests/test_rules.py",
    "golden": "tests/test_golden.py",
    "kinds": "tests/test_rules_kinds.py",
    "drafts": "tests/test_drafts_render.py",
    "initorder": "tests/test_rules_values.py",
    "hostvalues": "tests/test_rules_values.py",
    "roundtrip": "tests/test_rules_values.py",
    "syncorder": "tests/test_rules_values.py",
    "ownership": "tests/test_rules_values.py",
    "sides": "tests/test_rules_values.py",
    "preemption": "tests/test_rules_values.py",
    "width": "tests/test_rules_values.py",
    "putback": "tests/test_rules_values.py",
    "reserved": "tests/test_rules_values.py",
    "hotpath": "tests/test_rules_values.py",
    "asmbarrier": "tests/test_rules_values.py",
    "el2test": "tests/test_rules_values.py",
    "neverset": "tests/test_rules_values.py",
    "guestregime": "tests/test_rules_values.py",
    "capmerge": "tests/test_rules_values.py",
    "loadedcopy": "tests/test_rules_values.py",
    "exitwindow": "tests/test_rules_values.py",
    "featurecost": "tests/test_rules_values.py",
    "onepath": "tests/test_rules_values.py",
    "onepathop": "tests/test_rules_values.py",
    "e2honly": "tests/test_rules_values.py",
    "keepmask": "tests/test_rules_values.py",
    "entrystate": "tests/test_rules_values.py",
    "kconfigsym": "tests/test_rules_values.py",
    "walkorder": "tests/test_rules_values.py",
    "syncneed": "tests/test_rules_values.py",
    "errseq": "tests/test_rules_values.py",
}


def test_every_fixture_file_is_read_by_a_test():
    data = ROOT / "tests" / "data"
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    for directory, test in GLOBBED.items():
        text = (ROOT / test).read_text()
        assert '"%s"' % directory in text and ".glob(" in text, (directory, test)
    unused = []
    for path in sorted(data.rglob("*")):
        if not path.is_file() or path.name == "README.md":
            continue
        rel = path.relative_to(data)
        if path.name not in sources and rel.parts[0] not in GLOBBED:
            unused.append(str(rel))
    assert unused == []
