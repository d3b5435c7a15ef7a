"""Explicit topic creation, before anything produces.

The test broker auto-creates unknown topics with 4 partitions whatever was configured, and a
produce to a topic it no longer has can be acknowledged and discarded; so the ledger creates its
topics itself at start-up and after a detected reset.
"""

from __future__ import annotations

from kafka.errors import KafkaError, TopicAlreadyExistsError

from consumers.kafka_clients import make_admin
from ledger.errors import BrokerUnavailableError


def ensure_topics(bootstrap: str, partitions: dict[str, int], timeout_s: float) -> None:
    """Create each topic with its partition count unless it exists (existing ones are left as is)."""
    admin = make_admin(bootstrap, timeout_s)
    try:
        existing = set(admin.list_topics())
        missing = {name: n for name, n in partitions.items() if name not in existing}
        if missing:
            admin.create_topics(
                {
                    name: {"num_partitions": n, "replication_factor": 1}
                    for name, n in missing.items()
                },
                timeout_ms=int(timeout_s * 1000),
                raise_errors=False,
            )
    except TopicAlreadyExistsError:
        pass
    except KafkaError as exc:
        raise BrokerUnavailableError(
            f"cannot create topics {sorted(partitions)} at {bootstrap}: {exc}"
        ) from exc
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: list[str], timeout_s: float) -> None:
    admin = make_admin(bootstrap, timeout_s)
    try:
        admin.delete_topics(names, timeout_ms=int(timeout_s * 1000), raise_errors=False)
    finally:
        admin.close()
