"""The parsed model kept between processes (bot.regmodel.cache): never
stale, never in the way when it is broken or cannot be written."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.regmodel import cache
from bot.regmodel.load import (
    KVM_FILE,
    SYSREG_FILE,
    Parsed,
    _flag_sets,
    _read_package,
    build_parts,
    cached_parts,
)

SYSREG = _read_package(SYSREG_FILE)
KVM = _read_package(KVM_FILE)
HCR_DESCRIPTION = 'description = "Hypervisor Configuration Register"'



def fresh(kvm: str = KVM) -> Parsed:
    """What the cache must give back: the files parsed now."""
    registers, data = build_parts(SYSREG, kvm)
    return registers, data, tuple(_flag_sets(data, registers))


def entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("regmodel-*.pickle"))


def test_the_second_load_reads_what_the_first_stored(tmp_path: Path) -> None:
    first = cached_parts(SYSREG, KVM, directory=tmp_path)
    assert first == fresh()
    assert len(first[2]) > 0
    [entry] = entries(tmp_path)

    def parse_again() -> Parsed:
        raise AssertionError("parsed again though the cache holds this text")

    again = cache.cached("regmodel", (SYSREG.encode(), KVM.encode()), parse_again,
                         lambda v: isinstance(v, tuple), directory=tmp_path)
    assert again == first
    assert entries(tmp_path) == [entry]


def test_a_changed_kvm_toml_is_picked_up(tmp_path: Path) -> None:
    assert KVM.count(HCR_DESCRIPTION) == 1
    original = cached_parts(SYSREG, KVM, directory=tmp_path)
    changed_text = KVM.replace(HCR_DESCRIPTION, 'description = "Changed in a test"')
    changed = cached_parts(SYSREG, changed_text, directory=tmp_path)
    assert changed[1].registers["HCR_EL2"].description == "Changed in a test"
    assert changed == fresh(changed_text)
    assert original[1].registers["HCR_EL2"].description == "Hypervisor Configuration Register"
    assert len(entries(tmp_path)) == 2
    # And back: the original text still gives the original model.
    assert cached_parts(SYSREG, KVM, directory=tmp_path) == original


def test_a_changed_layout_is_picked_up(tmp_path: Path) -> None:
    cached_parts(SYSREG, KVM, directory=tmp_path)
    broken = SYSREG.replace("Field\t27\tTGE", "Field\t27\tTGEX")
    assert broken != SYSREG
    with pytest.raises(ConfigError, match="TGEX"):
        cached_parts(broken, KVM, directory=tmp_path)


def test_a_kvm_toml_error_is_raised_every_time_never_cached(tmp_path: Path) -> None:
    bad = KVM.replace("schema = 1", "schema = 2")
    assert bad != KVM
    for _ in range(2):
        with pytest.raises(ConfigError, match="schema"):
            cached_parts(SYSREG, bad, directory=tmp_path)
    assert entries(tmp_path) == []


@pytest.mark.parametrize("content", [
    b"",
    b"not a pickle at all\n",
    pickle.dumps(fresh())[:1000],          # truncated
    pickle.dumps({"registers": "of another shape"}),        # the wrong type
    pickle.dumps(({"HCR_EL2": "not a Register"}, None, ())),
    pickle.dumps(fresh()[:2]),                              # an older shape
], ids=["empty", "garbage", "truncated", "wrong-type", "wrong-members", "two-parts"])
def test_a_corrupt_cache_file_is_ignored_and_rebuilt(tmp_path: Path, content: bytes) -> None:
    cached_parts(SYSREG, KVM, directory=tmp_path)
    [entry] = entries(tmp_path)
    entry.write_bytes(content)
    assert cached_parts(SYSREG, KVM, directory=tmp_path) == fresh()
    with open(entry, "rb") as fh:
        assert pickle.load(fh) == fresh()


def test_an_unwritable_cache_directory_costs_only_the_parse(tmp_path: Path) -> None:
    # A regular file where the directory should be: no user, root included,
    # can create the cache there.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    for _ in range(2):
        assert cached_parts(SYSREG, KVM, directory=blocker / "cache") == fresh()
    assert list(tmp_path.iterdir()) == [blocker]


def test_a_read_only_cache_directory_is_still_read(tmp_path: Path) -> None:
    # (Root writes through the mode: the test above covers an unwritable
    # directory for every user.)
    expected = cached_parts(SYSREG, KVM, directory=tmp_path)
    tmp_path.chmod(0o555)
    try:
        assert cached_parts(SYSREG, KVM, directory=tmp_path) == expected
        changed = KVM.replace(HCR_DESCRIPTION, 'description = "Changed in a test"')
        got = cached_parts(SYSREG, changed, directory=tmp_path)
        assert got[1].registers["HCR_EL2"].description == "Changed in a test"
    finally:
        tmp_path.chmod(0o755)


def test_old_entries_are_evicted(tmp_path: Path) -> None:
    texts = [KVM.replace(HCR_DESCRIPTION, 'description = "Variant %d"' % i)
             for i in range(cache.KEEP + 3)]
    for n, text in enumerate(texts):
        cached_parts(SYSREG, text, directory=tmp_path)
        name = cache.key("regmodel", (SYSREG.encode(), text.encode()))
        os.utime(tmp_path / name, (1000 + n, 1000 + n))   # written in this order
    kept = {p.name for p in entries(tmp_path)}
    assert kept == {cache.key("regmodel", (SYSREG.encode(), t.encode()))
                    for t in texts[-cache.KEEP:]}
    assert not list(tmp_path.glob(".regmodel-*"))     # no temporary files left


def test_cache_dir_follows_xdg() -> None:
    assert cache.cache_dir({"XDG_CACHE_HOME": "/c", "HOME": "/h"}) == Path("/c/kvm-sysreg-bot")
    assert cache.cache_dir({"HOME": "/h"}) == Path("/h/.cache/kvm-sysreg-bot")
    # The XDG spec: a relative path is invalid and ignored.
    assert cache.cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == Path(
        "/h/.cache/kvm-sysreg-bot")
    assert cache.cache_dir({"XDG_CACHE_HOME": "rel"}) is None


def test_the_shipped_model_uses_the_user_cache(tmp_path: Path) -> None:
    code = ("from bot.regmodel import load_model\n"
            "m = load_model()\n"
            "print(m.lookup('HCR_TGE').name, len(m.flag_sets), len(m.functions))\n")
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].startswith("TGE ")
    assert len(entries(tmp_path / "kvm-sysreg-bot")) == 1
