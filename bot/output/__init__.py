"""Renderers of `bot check` results for people and tools: kernel-style text
(`text`), b4 review's check protocol and checkpatch-style lines
(`b4review`), and what the terminal needs (`terminal`: control characters
removed, progress). The JSON contract itself is `bot.report.series_dict`;
renderers receive it beside the result, so a field added to the contract
is one line away from being shown."""
