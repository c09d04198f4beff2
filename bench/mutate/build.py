"""Running the registered generators into `Case`s, deterministically.

Each generator gets its own `random.Random` seeded from the run's seed and
the generator's name, so adding or changing one generator never changes
the cases another produces. Case ids are `<kind>-<b|n>-<generator>-<n>`
("n-n-..." for the general neutral transforms).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from mutate import (
    kinds_defs,
    kinds_hotpath,
    kinds_init,
    kinds_paths,
    kinds_polarity,
    kinds_regime,
    kinds_restore,
    kinds_state,
    kinds_values,
    neutral,
    neutral_refactor,
)
from mutate.cases import KIND_CATEGORIES, REGISTRY, Case, Generator
from mutate.source import Kernel

# Imported for their registrations.
_MODULES = (kinds_defs, kinds_restore, kinds_hotpath, kinds_regime, kinds_polarity, kinds_state,
            kinds_init, kinds_paths, kinds_values, neutral, neutral_refactor)


def generators(kinds: Iterable[str] | None = None) -> list[Generator]:
    wanted = set(kinds) if kinds else None
    out = [g for g in REGISTRY if wanted is None or g.kind in wanted]
    return sorted(out, key=lambda g: (g.kind or "~", not g.buggy, g.name))


def build(kernel: Kernel, seed: int, kinds: Iterable[str] | None = None) -> list[Case]:
    cases: list[Case] = []
    for gen in generators(kinds):
        rng = random.Random("%d:%s" % (seed, gen.name))
        for n, change in enumerate(gen.func(kernel, rng), 1):
            if not change.files:
                raise ValueError("%s #%d changes nothing" % (gen.name, n))
            anchors = change.anchors()
            if gen.buggy and not anchors:
                raise ValueError("%s #%d has no anchor" % (gen.name, n))
            cats = KIND_CATEGORIES[gen.kind] | gen.extra if gen.buggy else frozenset()
            cases.append(Case(
                id="%s-%s-%s-%02d" % (gen.kind or "n", "b" if gen.buggy else "n", gen.name, n),
                kind=gen.kind, buggy=gen.buggy, generator=gen.name,
                justification=gen.justification, function=change.function,
                subject=change.subject, message=change.message,
                files=tuple(sorted(change.files.items())), anchors=anchors,
                categories=cats))
    return cases
