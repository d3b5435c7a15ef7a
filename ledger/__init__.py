"""The ledger: the event contract, the sealed per-customer streams, and the store that keeps them.

Everything here is free of Kafka and DuckDB; `consumers` and `projections` build on it.
"""
