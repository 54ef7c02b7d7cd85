"""Text that must survive a trip through files, logs and the warehouse. Standard library only (loaded by sensors)."""


def storable(text: str) -> str:
    """``text`` with what UTF-8 cannot encode written as escapes: for file names and reasons that quote input."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
