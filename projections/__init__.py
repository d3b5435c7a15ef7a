"""DuckDB projections of the sealed ledger: promises, trust gap, complaints, contact pressure, anomalies.

Projections are disposable: they can be dropped and rebuilt from the ledger, fully or as of an
instant, and are then identical.
"""
