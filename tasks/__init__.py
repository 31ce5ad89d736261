"""Thin Prefect tasks, one per ODM stage, around odm_core's stage functions."""
