"""Ray actors."""
