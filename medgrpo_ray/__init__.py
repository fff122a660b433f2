"""MedGRPO-Ray core."""
