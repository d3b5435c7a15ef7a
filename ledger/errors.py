"""One exception hierarchy for everything a user can act on.

The CLI prints ``str(error)`` as one line and exits non-zero; ``--debug`` shows the traceback.
Library errors are wrapped once, at the boundary where they occur, with ``raise … from exc``.
"""

from __future__ import annotations

from dataclasses import dataclass


class CxlError(Exception):
    """Root of every error cx-ledger raises on purpose."""

    exit_code = 1


class ConfigError(CxlError):
    """A setting or CLI flag has a value the ledger cannot work with."""

    exit_code = 2


@dataclass(frozen=True)
class FieldProblem:
    """One reason a record failed the event contract: where (dotted path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class InvalidEventError(CxlError):
    """A record does not satisfy the event contract (schemas/).

    ``origin`` names the record (``file.jsonl:12`` or ``cx.events/0@1234``); ``problems`` lists every
    field that failed, so a publisher can fix them all at once.
    """

    def __init__(self, origin: str, problems: list[FieldProblem]) -> None:
        self.origin = origin
        self.problems = problems
        super().__init__(f"{origin}: " + "; ".join(str(p) for p in problems))

    @property
    def reason(self) -> str:
        return "; ".join(str(p) for p in self.problems)


class RejectedRecordsError(CxlError):
    """Some input records were rejected; the valid ones were still processed."""

    exit_code = 3


class StoreError(CxlError):
    """The ledger store cannot be opened, read or written."""


class ChainBrokenError(CxlError):
    """A customer's hash chain does not verify: history was altered, lost or reordered."""

    exit_code = 4

    def __init__(self, customer_id: str, seq: int, what: str, expected: str, found: str) -> None:
        self.customer_id = customer_id
        self.seq = seq
        self.what = what
        self.expected = expected
        self.found = found
        super().__init__(
            f"chain broken: customer {customer_id!r} seq {seq}: {what} "
            f"expected {expected} found {found}"
        )


class LedgerTamperedError(CxlError):
    """A stored row of the ledger is not what sealing wrote: edited, inserted, removed or reordered.

    ``position`` is the row's place in the ledger order (``None`` for the event-id index, or for
    another table named by ``place``).
    """

    exit_code = 4

    def __init__(self, position: int | None, what: str, *, place: str | None = None) -> None:
        self.position = position
        self.what = what
        where = place or ("event-id index" if position is None else f"ledger position {position}")
        super().__init__(f"ledger altered at {where}: {what}")


class BrokerUnavailableError(CxlError):
    """No Kafka broker answers at the configured address, or the embedded one cannot start."""

    exit_code = 5


class KeyStoreError(CxlError):
    """The key store or the key-encryption key is missing, wrong or altered: personal fields can
    be neither sealed nor read, and nothing is guessed."""

    exit_code = 7


class LogResetError(CxlError):
    """A Kafka partition is not the log the ledger consumed before.

    The topic was deleted and recreated, the broker lost its storage, or the bootstrap address now
    points at another cluster — whatever the new log's length. Reading on would silently skip
    events, so ingest stops.
    """

    exit_code = 6

    def __init__(self, topic: str, partition: int, resume_at: int, why: str) -> None:
        self.topic = topic
        self.partition = partition
        self.resume_at = resume_at
        self.why = why
        super().__init__(
            f"{topic}/{partition} was reset ({why}); the ledger had consumed it up to offset "
            f"{resume_at}. If the topic was recreated on purpose, run again with --accept-reset "
            "to read it from offset 0 (event_id dedupe keeps it exactly-once)."
        )


class ErasureIncompleteError(CxlError):
    """``cxl forget`` destroyed the customer's data key but could not seal ``customer.erased``:
    the personal data is already unreadable, and running the same command again finishes it.
    The exit code is that of the failure underneath."""

    def __init__(self, customer_id: str, cause: CxlError) -> None:
        self.exit_code = cause.exit_code
        super().__init__(
            f"customer {customer_id!r}: data key destroyed, but customer.erased was not sealed "
            f"({str(cause).rstrip('.')}); run the same `cxl forget` again to finish"
        )


class CheckpointError(CxlError):
    """A checkpoint, its signature or its signing key is not acceptable (not a checkpoint, signed
    by another key, of another ledger): it proves nothing either way about the ledger."""

    exit_code = 8
