"""Thin Prefect flows over the blend library: each task wraps one library function."""
