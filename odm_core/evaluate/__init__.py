"""Evaluation apart from the product path: cloud and DSM comparison, synthetic truth checks."""
