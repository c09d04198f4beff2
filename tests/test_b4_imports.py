"""What a b4 check loads: b4 runs `bot check --format b4 -` (and the other
b4 formats) once for every patch a maintainer looks at, so that path
imports only what it uses (bench/b4check.py times it). A structural guard,
not a timed one: `python -X importtime` lists every module the check really
imported, and none of the libraries it has no use for may be among them.

The path does use b4 (series assembly); b4's own imports that assembly
never needs (requests, smtplib, dkim) are deferred by `bot.lore.deferred`
and must still load, whole and as one module object, for whoever uses them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.b4_support import b4_messages, check_input, init_tree, track_series, write_tracking

DATA = Path(__file__).parent / "data"
REAL = DATA / "labelled" / "problem-width-genmask-hcr-imm.mbox"
SERIES = DATA / "rules" / "series" / "resolved-in-series.mbox"

# Libraries and bot modules the b4 formats never use: HTTP, mail sending,
# attestation, local mail folders, the database, templates and drafts, the
# web, git plumbing (no kernel repository configured), lore fetching,
# re-review history.
UNUSED = ("requests", "urllib3", "charset_normalizer", "idna", "smtplib", "ssl", "dkim", "patatt",
          "mailbox", "dns", "sqlalchemy", "alembic", "psycopg", "jinja2", "markupsafe", "flask",
          "werkzeug", "waitress", "bot.store", "bot.drafts", "bot.web", "bot.kernel",
          "bot.lore.client", "bot.history", "bot.workflow", "bot.outbox", "bot.poller")


def imported(stderr: str) -> set[str]:
    """The modules `python -X importtime` reports as imported."""
    names = set()
    for line in stderr.splitlines():
        parts = line.split("|")
        if line.startswith("import time:") and len(parts) == 3 and parts[1].strip().isdigit():
            names.add(parts[2].strip())
    return names


def unused(names: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == u or n.startswith(u + ".") for u in UNUSED))


def run_check(fmt: str, stdin: bytes, cwd: Path, tmp_path: Path,
              tracking: Path | None = None) -> tuple[str, set[str]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           "BOT_CONFIG": str(DATA / "config" / "test.toml"),
           "BOT_STATE_DIR": str(tmp_path / "state")}
    if tracking is not None:
        env["B4_TRACKING_FILE"] = str(tracking)
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "bot", "check",
                           "--format", fmt, "-"], input=stdin, capture_output=True, env=env,
                          cwd=cwd, check=False)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    return proc.stdout.decode(), imported(proc.stderr.decode())


def patch_bytes(path: Path, index: int = 0) -> tuple[bytes, list[object]]:
    """Patch `index` (by subject order) as b4 hands it, and the thread."""
    messages = b4_messages(path.read_bytes())
    ordered = sorted(messages, key=lambda m: str(m["subject"]))  # type: ignore[index]
    return check_input(ordered[index]), messages


@pytest.fixture
def tracked(tmp_path: Path) -> tuple[Path, Path, list[object]]:
    """A scratch tree where b4 tracks the resolved-in-series thread, and
    the tracking file b4 would hand its check commands."""
    repo = tmp_path / "linux"
    repo.mkdir()
    (repo / "README").write_text("base\n")
    init_tree(repo)
    messages = b4_messages(SERIES.read_bytes())
    tracking = write_tracking(tmp_path / "tracking.json", track_series(repo, messages))
    return repo, tracking, messages


def test_per_patch_check_imports_only_what_it_uses(tmp_path: Path) -> None:
    stdin, _ = patch_bytes(REAL)
    out, names = run_check("b4", stdin, tmp_path, tmp_path)
    [entry] = json.loads(out)
    assert entry["status"] == "warn" and "checked alone" in entry["summary"]
    assert {"b4", "bot.lore.assemble", "bot.rules", "bot.output.b4review"} <= names
    assert unused(names) == []


def test_checkpatch_format_imports_only_what_it_uses(tmp_path: Path) -> None:
    stdin, _ = patch_bytes(REAL)
    out, names = run_check("checkpatch", stdin, tmp_path, tmp_path)
    assert "WARNING:" in out and "[register-width]" in out
    assert "bot.rules" in names
    assert unused(names) == []


@pytest.mark.parametrize("fmt", ["b4", "b4-series"])
def test_check_with_the_series_imports_only_what_it_uses(
        fmt: str, tracked: tuple[Path, Path, list[object]], tmp_path: Path) -> None:
    repo, tracking, _ = tracked
    stdin, _ = patch_bytes(SERIES)
    out, names = run_check(fmt, stdin, repo, tmp_path, tracking)
    [entry] = json.loads(out)
    assert "1 resolved in series" in entry["summary"]
    assert "checked with its series" in entry["summary"]
    assert "b4" in names
    assert unused(names) == []


def _python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parent.parent, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_deferred_modules_load_whole_on_first_use() -> None:
    """After series assembly loaded b4, requests and smtplib are not loaded;
    the first use loads each into the one module object b4, liblore and
    everyone else hold, with its real classes (not the placeholders b4's
    annotations saw)."""
    out = _python(
        "import sys\n"
        "import bot.lore.assemble\n"
        "print(sorted(m for m in ('requests.sessions', 'urllib3', 'ssl') if m in sys.modules))\n"
        "print([n for n in ('Session', 'SMTP', 'SMTP_SSL')"
        " if n in vars(sys.modules['requests']) or n in vars(sys.modules['smtplib'])])\n"
        "import b4, liblore.node, requests, smtplib\n"
        "print(requests.Session.__module__, smtplib.SMTP_SSL.__module__)\n"
        "print(b4.requests is requests is liblore.node.requests is sys.modules['requests'],"
        " b4.smtplib is smtplib is sys.modules['smtplib'])\n"
        "print(type(b4.get_requests_session()).__module__, type(requests).__name__)\n")
    assert out.splitlines() == ["[]", "[]", "requests.sessions smtplib", "True True",
                                "requests.sessions module"]


def test_a_deferred_package_loads_before_its_submodule() -> None:
    """Importing a submodule first (the lore client's adapters, say) runs
    the package's own code first, as a normal import would."""
    out = _python(
        "import sys\n"
        "import bot.lore.assemble\n"
        "import requests.adapters\n"
        "import requests\n"
        "print(requests.adapters.HTTPAdapter.__name__, requests.__version__ != '',"
        " requests.Session.__module__)\n"
        "from bot.lore.client import LoreClient\n"
        "print(LoreClient.__name__)\n")
    assert out.splitlines() == ["HTTPAdapter True requests.sessions", "LoreClient"]
