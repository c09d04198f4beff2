"""The kernel git repository: base inference and whole files, read through git objects."""

from bot.kernel.base import BaseSearch, pre_images, trailer_commit
from bot.kernel.git import RepoError
from bot.kernel.repo import KernelRepo, parse_range

__all__ = ["BaseSearch", "KernelRepo", "RepoError", "parse_range", "pre_images",
           "trailer_commit"]
