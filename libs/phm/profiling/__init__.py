"""Population profiles (crude and age-standardised) and inequality indices."""
