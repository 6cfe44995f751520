"""The ``imageopt`` command line, on top of every other package."""
