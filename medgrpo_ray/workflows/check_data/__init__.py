"""The data check: validate every record and decode every video as training would (run.py)."""
