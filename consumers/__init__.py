"""Everything that talks Kafka: the embedded broker, topics, publishing, ingest, the DLQ and the relay.

Each long-running consumer has one shape: poll a batch, process it, record its position together
with its results, report progress; stop cleanly on a signal.
"""
