"""eventsourcing's PostgreSQL infrastructure with a statement timeout on every connection.

The library sizes its connection pool, pings connections before use and times out idle
transactions from its settings, but has no statement timeout; without one a statement stuck behind
a lock (or a server in trouble) holds a writer forever. The timeout is given to libpq as a
connection option (``statement_timeout``), so every connection the pool ever opens has it, lock
waits included. libpq's ``PG*`` variables are withheld first (``withhold_from_libpq``): nothing
but ``CXL_STORE`` and the store's settings shapes a connection.
"""

from __future__ import annotations

from eventsourcing.postgres import PostgresFactory
from eventsourcing.utils import Environment, EnvType

from ledger.settings import withhold_from_libpq

STATEMENT_TIMEOUT_MS = "STATEMENT_TIMEOUT_MS"


class LedgerPostgresFactory(PostgresFactory):
    def __init__(self, env: Environment | EnvType | None):
        withhold_from_libpq()
        super().__init__(env)
        timeout = self.env.get(STATEMENT_TIMEOUT_MS)
        if timeout:
            kwargs = self.datastore.pool.kwargs
            assert isinstance(kwargs, dict)
            kwargs["options"] = f"-c statement_timeout={int(timeout)}"
