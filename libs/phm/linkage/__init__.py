"""Record linkage: identity profiles, the Splink model, clustering, stable person ids, evaluation (work in progress, issue 5)."""
