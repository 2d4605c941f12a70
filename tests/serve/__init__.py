"""Tests of serve/, one module per module or package tested."""
