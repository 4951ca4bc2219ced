"""The errors of the assistant, in one tree (and how to recognise a vector store that cannot be reached).

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


class SearchUnavailable(AssistantError):
    """The vector store could not be reached (a Chroma server down or restarting): try again later.

    Raised from the client's own error (``raise SearchUnavailable(...) from
    exc``) where the store is queried; :func:`search_unreachable` recognises
    the client's errors too, for a caller that meets them unconverted.
    """


#: Clients of other services that are built on httpx too: their connection errors are not the search's.
_OTHER_HTTP_CLIENTS = {"openai", "langchain_openai", "langchain_core"}
#: What chromadb's HTTP client raises when it cannot reach the server at all (at connect or on a heartbeat).
_CHROMA_UNREACHABLE = "Could not connect to a Chroma server"


def search_unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, or an exception it came from, says the vector store could not be reached.

    A Chroma server that is down, restarting or cut off gives httpx's transport
    errors (``ConnectError``, ``ReadTimeout``, ``RemoteProtocolError``...)
    from its ``HttpClient``, or a ``ValueError`` saying it could not connect.
    """
    import httpx  # chromadb's HTTP client is built on it

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if type(exc).__module__.split(".")[0] in _OTHER_HTTP_CLIENTS:  # a model or embeddings endpoint's error
            return False
        if isinstance(exc, (SearchUnavailable, httpx.TransportError)):
            return True
        if isinstance(exc, ValueError) and str(exc).startswith(_CHROMA_UNREACHABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
