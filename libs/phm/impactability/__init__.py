"""Impactability: the historical programme as a trial, its effect, uplift models and targeting."""
