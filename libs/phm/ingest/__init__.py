"""Ingest: landing extracts -> bronze (as delivered) -> silver (typed, checked, pseudonymised) + quarantine + vault."""
