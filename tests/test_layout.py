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


# Directories whose every file a test reads by globbing them (the test named).
GLOBBED = {
    "fuzz": "tests/test_hostile.py",
    "threads": "tests/test_check.py",
    "labelled": "tests/test_rules_labelled.py",
    "rules": "tests/test_rules.py",
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
