"""Public reference data: standardised from the files shipped in configs/reference."""
