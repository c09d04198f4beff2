"""The parsed shipped model kept between processes, in the user's cache directory.

Parsing kvm.toml is most of what loading the model costs, and b4 starts a
fresh process for every patch it checks. The parsed data is pickled to
``$XDG_CACHE_HOME/kvm-sysreg-bot/`` (``~/.cache`` when the variable is unset)
under a name that is a hash of everything the result depends on: the data
files' bytes, the source of the modules that parse them and define the
pickled types, the bot's version and Python's. A changed file gives a new
name, so a stale entry is never read. A file that cannot be read, does not
unpickle, holds the wrong type or belongs to another user is ignored and
rebuilt; a cache directory that cannot be written only costs the parse.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeGuard, TypeVar

from bot import __version__

logger = logging.getLogger(__name__)

T = TypeVar("T")

APP_DIR = "kvm-sysreg-bot"
# Entries kept per kind: enough for a few checkouts of the bot side by side
# (each its own hash) without one evicting the other on every run.
KEEP = 8


def cache_dir(env: Mapping[str, str] | None = None) -> Path | None:
    """$XDG_CACHE_HOME/kvm-sysreg-bot, or ~/.cache/kvm-sysreg-bot; None when
    neither can be named (the XDG spec ignores a relative $XDG_CACHE_HOME)."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    if base and os.path.isabs(base):
        return Path(base) / APP_DIR
    home = env.get("HOME", "")
    return Path(home) / ".cache" / APP_DIR if os.path.isabs(home) else None


def _sources() -> Iterable[bytes]:
    # The parsing code and the pickled types live in this package: any
    # change to them must give a new key, whatever the version says.
    for path in sorted(Path(__file__).parent.glob("*.py")):
        yield path.name.encode()
        yield path.read_bytes()


def key(kind: str, data: Iterable[bytes]) -> str:
    """The entry's name: a hash of `data`, this package's source and the
    versions of the bot, Python and pickle."""
    h = hashlib.sha256()
    for part in (kind.encode(), __version__.encode(), sys.version.encode(),
                 b"%d" % pickle.HIGHEST_PROTOCOL, *data, *_sources()):
        h.update(b"%d:" % len(part))
        h.update(part)
    return "%s-%s.pickle" % (kind, h.hexdigest()[:32])


def _read(path: Path) -> object:
    with open(path, "rb") as fh:
        # Unpickling runs code: only a file this user wrote is trusted.
        if os.fstat(fh.fileno()).st_uid != os.getuid():
            raise PermissionError("owned by another user")
        return pickle.load(fh)


def _write(directory: Path, name: str, value: object) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % name, dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, directory / name)   # readers see the old file or the whole new one
    except BaseException:
        os.unlink(tmp)
        raise


def _evict(directory: Path, kind: str) -> None:
    entries = sorted(directory.glob("%s-*.pickle" % kind),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[KEEP:]:
        old.unlink(missing_ok=True)


def cached(kind: str, data: Iterable[bytes], build: Callable[[], T],
           valid: Callable[[object], TypeGuard[T]], directory: Path | None = None) -> T:
    """`build()`, or what an earlier process stored for the same `data` (and
    the same code). `valid` checks a loaded value's type; a value that fails
    it is rebuilt. `directory` defaults to cache_dir()."""
    directory = cache_dir() if directory is None else directory
    if directory is None:
        return build()
    try:
        name = key(kind, data)
    except OSError as exc:   # the package's source is not there to hash
        logger.debug("%s: no cache key: %s", kind, exc)
        return build()
    path = directory / name
    try:
        value = _read(path)
    except FileNotFoundError:
        pass
    except Exception as exc:  # noqa: BLE001 - corrupt, truncated, foreign: unpickling raises anything
        logger.debug("%s: ignoring the cached %s: %s", kind, path, exc)
    else:
        if valid(value):
            return value
        logger.debug("%s: ignoring the cached %s: not the expected type", kind, path)
    value = build()
    try:
        _write(directory, name, value)
        _evict(directory, kind)
    except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
        # Read-only, full, or a value pickle cannot store: the next process parses again.
        logger.debug("%s: cannot write %s: %s", kind, path, exc)
    return value
