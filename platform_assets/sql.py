"""SQL text built from names the platform did not choose. Standard library only."""


def quoted(name: str) -> str:
    """``name`` as a SQL identifier: in double quotes, a double quote inside it doubled.

    Column names come from a use case's declaration and from its data, and any may be a
    reserved word (a label called ``default``, an event time called ``order``); quoted,
    each is read as a name. DuckDB matches a quoted name case-insensitively, as it does an
    unquoted one, so quoting changes no column a query finds.
    """
    return '"' + name.replace('"', '""') + '"'
