"""The ``cxl`` command: the application shell over ledger, consumers and projections."""
