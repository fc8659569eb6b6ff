"""The linked person model: the costed timeline (gold.events), condition registers and observations."""
