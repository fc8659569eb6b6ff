"""Record linkage: identity profiles, Splink model, clustering, stable person ids, evaluation."""
