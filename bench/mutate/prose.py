"""Commit-message text: paragraphs wrapped as kernel commit messages are,
and the hedges authors write under refactors."""

from __future__ import annotations

import random
import textwrap

# What authors of refactors say; a hedge must never decide a finding.
HEDGES = (
    "No functional change intended.",
    "No functional change.",
    "No functional change intended, but this makes the next patch simpler.",
    "This should not change behaviour.",
    "No change in behaviour is expected; the generated code is the same.",
)

# Words a token-matching rule might key on: "configur..." in a sentence
# that changes nothing.
CONFIG_WORDS = (
    "The configuration handling stays as it is.",
    "This does not depend on the host configuration.",
    "Kept separate so that the configuration code is easier to follow.",
)


def para(*texts: str) -> str:
    """Paragraphs wrapped at 72 columns, separated by blank lines."""
    return "\n\n".join(textwrap.fill(" ".join(t.split()), 72) for t in texts if t)


def hedged(rng: random.Random, *texts: str, always: bool = False) -> str:
    """`texts` as paragraphs, most of the time followed by a hedge (and now
    and then a sentence about configuration)."""
    extra = []
    if rng.random() < 0.3:
        extra.append(rng.choice(CONFIG_WORDS))
    if always or rng.random() < 0.7:
        extra.append(rng.choice(HEDGES))
    return para(*texts, *extra)
