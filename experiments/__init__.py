"""Experiment entry point (`python -m experiments.main`), configs and benchmark scripts."""
