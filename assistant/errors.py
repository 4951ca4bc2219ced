"""The errors of the assistant, in one tree.

Callers at the edge (CLI, pages) catch :class:`AssistantError` and show its
message; the traceback goes to the log.
"""


class AssistantError(Exception):
    """Base class: the message is meant for a person."""


class UnreadableFile(AssistantError):
    """A document could not be turned into text; the reason says why."""


class IndexMismatch(AssistantError):
    """The index was built with another embedding model than the one configured."""


class IndexEmpty(AssistantError):
    """Nothing has been indexed yet."""


class EmbeddingError(AssistantError):
    """The embedding backend failed."""
