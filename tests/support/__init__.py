"""Helpers that tests and ``conftest.py`` share: real servers started on demand, over sockets."""
