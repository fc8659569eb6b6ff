"""phm: a Population Health Management platform for NHS Integrated Care Systems.

The library is grouped by domain (one module or package per concept). The
`phm.runtime` package is the platform's edge: configuration, the Spark session
factory, the Delta table catalogue, the run ledger and job running. Domain
modules take and return DataFrames and never touch storage.
"""

__version__ = "0.1.0"
