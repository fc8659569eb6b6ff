"""The synthetic ICS: a seeded, Spark-distributed population with its source extracts and truth store.

Calibrated on public figures (configs/synthetic/calibration.yaml, sources in
FACTS.md). Generation is by blocks of people, each with its own seed derived
from (seed, block, stream), so the output is the same on any number of
cores or executors. The truth store is for evaluation and tests only: the
pipeline never reads it.
"""
