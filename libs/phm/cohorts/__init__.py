"""Case-finding cohorts: YAML-declared rules over each person's record, lists per PCN."""
