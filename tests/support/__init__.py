"""Helpers the tests share: stand-ins (a fake engine, a fake engine view), toy cost models,
store seeds and a local Prefect deployment. Not tests and not fixtures: test modules import
them (`from tests.support.toys import toy_cost`); fixtures live in the conftest.py files."""
