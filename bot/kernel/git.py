"""A kernel git repository, read and never written.

One `git cat-file --batch-command` process per `GitRepo` answers every
object question of a run (does this commit exist, which blob is this path at
that commit, the blob's text). The few things cat-file cannot do (walk
history, apply a patch into an index) run as short `git` commands.

Nothing here changes the repository: every command gets its own index file
(`GIT_INDEX_FILE`) and writes objects, when it must (`git apply --cached`),
into a private object directory (`GIT_OBJECT_DIRECTORY`) that borrows the
repository's objects as an alternate. The cat-file process sees that
private directory as an alternate too, so it reads what an apply wrote.
Hooks are off (`core.hooksPath=/dev/null`), optional locks are not taken,
and the caller's GIT_* environment is not inherited. Nothing taken from mail
becomes an option: revisions from mail are checked to be hex first, and
`--end-of-options` precedes every revision argument.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import BadInput

logger = logging.getLogger(__name__)

_TIMEOUT = 300
_HEX = re.compile(r"^[0-9a-f]{4,64}$")
# What `git` itself is told on every call.
_GIT_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false",
               "-c", "core.quotePath=false", "-c", "gc.auto=0")


class RepoError(Exception):
    """The repository cannot answer (a git command failed); the message says why."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """A git object's id, type and size, from the header `git cat-file --batch-command` prints."""

    oid: str
    type: str
    size: int


def is_hex(text: str) -> bool:
    return bool(_HEX.match(text))


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    # The caller may itself run under git (a hook, b4): its GIT_DIR,
    # GIT_INDEX_FILE... must not redirect our commands.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # Paths come from mail: never pathspec magic.
    env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C",
                "GIT_LITERAL_PATHSPECS": "1"})
    env.update(extra)
    return env


def _last_line(data: bytes, code: int) -> str:
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "exit %d" % code


class GitRepo:
    """A repository opened for reading: its git directory and one cat-file process."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        root = Path(path)
        if not root.exists():
            raise BadInput("kernel.repo %s: no such file or directory" % path)
        if not root.is_dir():
            raise BadInput("kernel.repo %s: not a directory" % path)
        self._scratch = Path(tempfile.mkdtemp(prefix="bot-kernel-"))
        self.objects = self._scratch / "objects"
        self.objects.mkdir()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer = weakref.finalize(self, _cleanup, self._scratch, None)
        try:
            gitdir = self._git_plain(["-C", str(root), "rev-parse", "--absolute-git-dir"])
        except RepoError as exc:
            self.close()
            raise BadInput("kernel.repo %s: not a git repository: %s" % (path, exc)) from None
        self.gitdir = gitdir.strip()
        try:
            common = self.run(["rev-parse", "--git-common-dir"]).strip()
            common_dir = Path(common if os.path.isabs(common) else os.path.join(self.gitdir,
                                                                                 common))
            self.repo_objects = str((common_dir / "objects").resolve())
            self._start()
        except (RepoError, OSError) as exc:
            self.close()
            raise BadInput("kernel.repo %s: not a usable git repository: %s" % (path, exc)
                           ) from None

    # -- processes ------------------------------------------------------------

    def _git_plain(self, args: Sequence[str]) -> str:
        try:
            proc = subprocess.run(["git", *_GIT_CONFIG, *args], capture_output=True,
                                  env=_clean_env({}), timeout=_TIMEOUT, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RepoError("git: %s" % exc) from None
        if proc.returncode != 0:
            raise RepoError(_last_line(proc.stderr, proc.returncode))
        return proc.stdout.decode("utf-8", "replace")

    def run(self, args: Sequence[str], *, stdin: bytes | None = None,
            env: Mapping[str, str] | None = None, cwd: str | None = None) -> str:
        """`git --git-dir=... ARGS`; RepoError with git's last line when it fails."""
        extra = {"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.objects)}
        extra.update(env or {})
        try:
            proc = subprocess.run(["git", "--git-dir=" + self.gitdir, *_GIT_CONFIG, *args],
                                  input=stdin, capture_output=True, env=_clean_env(extra),
                                  cwd=cwd or str(self._scratch), timeout=_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise RepoError("git %s: %s" % (args[0], exc)) from None
        if proc.returncode != 0:
            raise RepoError("git %s: %s" % (args[0], _last_line(proc.stderr,
                                                                 proc.returncode)))
        return proc.stdout.decode("utf-8", "surrogateescape")

    def scratch_env(self, index: Path) -> dict[str, str]:
        """Environment for a command that writes an index and objects: both private."""
        return {"GIT_INDEX_FILE": str(index), "GIT_OBJECT_DIRECTORY": str(self.objects),
                "GIT_ALTERNATE_OBJECT_DIRECTORIES": self.repo_objects}

    def scratch_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="series-", dir=self._scratch))

    def clear_scratch_objects(self) -> None:
        """Drop the objects applies wrote (nothing refers to them once read)."""
        for entry in self.objects.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)

    def _start(self) -> None:
        env = _clean_env({"GIT_ALTERNATE_OBJECT_DIRECTORIES": str(self.objects)})
        self._proc = subprocess.Popen(
            ["git", "--git-dir=" + self.gitdir, *_GIT_CONFIG, "cat-file", "--batch-command"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=str(self._scratch))
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _cleanup, self._scratch, self._proc)

    def _ask(self, command: str, name: str) -> tuple[ObjectInfo | None, bytes | None]:
        if "\n" in name or not name:
            return None, None
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise RepoError("git cat-file is not running")
            try:
                proc.stdin.write(("%s %s\n" % (command, name)).encode("utf-8",
                                                                      "surrogateescape"))
                proc.stdin.flush()
                header = proc.stdout.readline()
                if not header:
                    raise RepoError("git cat-file exited (status %s)" % proc.poll())
                parts = header.split()
                if len(parts) != 3 or parts[-1] in (b"missing", b"ambiguous"):
                    return None, None
                info = ObjectInfo(oid=parts[0].decode(), type=parts[1].decode(),
                                  size=int(parts[2]))
                if command != "contents":
                    return info, None
                data = proc.stdout.read(info.size + 1)
                if len(data) != info.size + 1:
                    raise RepoError("git cat-file: short read of %s" % name)
                return info, data[:-1]
            except (OSError, ValueError) as exc:
                raise RepoError("git cat-file: %s" % exc) from None

    def info(self, name: str) -> ObjectInfo | None:
        """What `name` (an object id, `REV:path`, `REV^{commit}`) is; None if missing."""
        return self._ask("info", name)[0]

    def contents(self, name: str) -> tuple[ObjectInfo, bytes] | None:
        info, data = self._ask("contents", name)
        if info is None or data is None:
            return None
        return info, data

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        self._finalizer()
        self._proc = None


def _cleanup(scratch: Path, proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=5)
        except (OSError, subprocess.SubprocessError):
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    shutil.rmtree(scratch, ignore_errors=True)
