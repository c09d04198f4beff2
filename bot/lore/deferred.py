"""Modules b4 imports that the bot's use of b4 never needs, loaded on first use.

b4 imports dkim (attestation), requests (its HTTP client, and liblore's)
and smtplib (`b4 send`) when it loads. The bot uses b4 to assemble series,
with no network (`b4.can_network` is off) and no mail sent through it, so
loading them is only a cost: about 50 ms of the 300 ms a b4 per-patch check
may take (`bench/b4check.py`).

While b4 loads, each of them that is not loaded yet is a module object in
`sys.modules` that loads the real module into itself on first use, the way
`importlib.util.LazyLoader` does; that cannot be used as it is, because b4
evaluates `requests.Session`, `smtplib.SMTP` and `smtplib.SMTP_SSL` in
annotations as it loads. Those names answer with placeholder classes until
b4 has loaded, and are gone after, so any later use (the poller's lore
client, the SMTP outbox) loads the real module, into the same object
everyone holds. A name b4 uses at load time that is not listed just loads
the module then: slower, never wrong.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import threading
import types
import typing
from collections.abc import Iterator, Mapping
from importlib.machinery import ModuleSpec

# One lock for all: a module's code may use another deferred module.
_LOCK = threading.RLock()


class _Deferred(types.ModuleType):
    """A module whose code has not run yet; `__getattr__` (a name it does
    not have) runs it. Until then the module has no `__path__`, so that
    importing a submodule of it runs the package first."""

    __spec_deferred__: ModuleSpec
    __path_deferred__: list[str] | None
    __placeholders__: tuple[str, ...]

    def __getattr__(self, attr: str) -> object:
        with _LOCK:
            if type(self) is _Deferred:
                if "__spec_deferred__" not in self.__dict__:  # its code is running
                    raise AttributeError("module %r has no attribute %r (not loaded yet)"
                                         % (self.__name__, attr))
                _load(self)
        return getattr(self, attr)


def _load(module: types.ModuleType) -> None:
    spec = module.__dict__.pop("__spec_deferred__")
    path = module.__dict__.pop("__path_deferred__")
    for name in module.__dict__.pop("__placeholders__"):
        module.__dict__.pop(name, None)
    if path is not None:
        module.__path__ = path
    assert spec.loader is not None
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if sys.modules.get(module.__name__) is module:
            del sys.modules[module.__name__]
        raise
    finally:
        module.__class__ = types.ModuleType


def _defer(name: str, annotated: tuple[str, ...]) -> _Deferred | None:
    if name in sys.modules:
        return None
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    if type(module) is not types.ModuleType:  # an extension module: not deferrable
        return None
    module.__class__ = _Deferred
    module.__dict__.update(__spec_deferred__=spec, __placeholders__=annotated,
                           __path_deferred__=module.__dict__.pop("__path__", None))
    for attr in annotated:
        module.__dict__[attr] = type(attr, (), {
            "__module__": name,
            "__doc__": "Stands for %s.%s in annotations while b4 loads." % (name, attr)})
    sys.modules[name] = module
    return typing.cast(_Deferred, module)


@contextlib.contextmanager
def deferred(modules: Mapping[str, tuple[str, ...]]) -> Iterator[None]:
    """Within this block, the modules named (each with the names that are
    only annotated while the block imports) are deferred, unless already
    loaded; after it, they load on first use."""
    with _LOCK:
        made = [m for m in (_defer(n, a) for n, a in modules.items()) if m is not None]
    try:
        yield
    finally:
        with _LOCK:
            for module in made:
                if type(module) is _Deferred:
                    for attr in module.__dict__["__placeholders__"]:
                        module.__dict__.pop(attr, None)
                    module.__dict__["__placeholders__"] = ()
