"""The platform's edge: Spark session, table catalogue, run ledger, job running and logs.

Only jobs (and the CLI) use this package; domain modules stay pure.
"""
