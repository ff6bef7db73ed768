"""Behaviour any taskq transport must show, driven through taskq's public API and foreign
producers only (so the same tests can run against another transport implementation)."""
