"""Errors of the projections side: a DuckDB file problem is not a ledger store problem."""

from __future__ import annotations

from ledger.errors import ConfigError, CxlError


class ProjectionsError(CxlError):
    """A projections (DuckDB) file or an output file cannot be opened, read or written."""


class QueryError(ConfigError):
    """An analyst's SQL failed, or tried to do more than read the projections file it was given."""


class ProtectedTargetError(ConfigError):
    """An output target is (or would overwrite) the ledger store or the live projections."""


class ProjectionsDifferError(CxlError):
    """Projections (an export or a replay file) are not what the ledger rebuilds: a file, a
    table or the ledger they were built from changed since."""

    exit_code = 4
