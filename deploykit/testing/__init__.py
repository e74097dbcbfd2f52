"""Test tooling for plugin authors and users: fixtures, the memory target, TargetContract."""
