"""The shape of the code base: pure stages stay pure, b4 stays behind bot/lore,
and every fixture file is read by some test."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PURE = ["bot.parse.mail", "bot.parse.diff", "bot.parse.series", "bot.parse.threads",
        "bot.rules", "bot.regmodel", "bot.drafts"]
FORBIDDEN = ["sqlalchemy", "requests", "b4", "liblore", "flask", "psycopg", "alembic", "urllib3"]


def test_pure_stages_import_no_io_libraries():
    code = ("import sys\n" + "".join("import %s\n" % m for m in PURE) +
            "print(' '.join(sorted(m for m in %r if m in sys.modules)))" % FORBIDDEN)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""


def test_only_bot_lore_imports_b4():
    pattern = re.compile(r"^\s*(import|from)\s+(b4|liblore)\b", re.M)
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "bot").rglob("*.py")
                 if pattern.search(p.read_text()) and "bot/lore/" not in p.as_posix()]
    assert offenders == []


def test_no_sys_exit_below_the_cli():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "bot").rglob("*.py")
                 if "sys.exit(" in p.read_text() and p.name not in ("cli.py", "__main__.py")]
    assert offenders == []


def test_every_fixture_file_is_read_by_a_test():
    data = ROOT / "tests" / "data"
    sources = "\n".join(p.read_text() for p in (ROOT / "tests").rglob("*.py"))
    unused = []
    for path in sorted(data.rglob("*")):
        if not path.is_file() or path.name == "README.md":
            continue
        rel = path.relative_to(data)
        # Named directly, or its directory is globbed by a test.
        named = path.name in sources
        parents = [str(p.relative_to(data)) for p in path.parents if data in p.parents]
        globbed = any(('"%s"' % d) in sources or ("/ \"%s\"" % d) in sources or
                      ("DATA / \"%s\"" % d) in sources for d in parents)
        if not (named or globbed):
            unused.append(str(rel))
    assert unused == []
