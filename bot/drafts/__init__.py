"""Reply drafts in the kernel's inline style (pure: no I/O).

`render` turns a series' findings into reply drafts; `headers` cleans
everything taken from mail before it can reach a header; `message` builds
the mail of an approved draft; `b4review` writes comments in the files
`b4 review` reads.
"""

from bot.drafts.render import environment, render, wanted

__all__ = ["environment", "render", "wanted"]
