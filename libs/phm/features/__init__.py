"""Risk model features: person x index date, from data dated strictly before each index date."""
