"""The ``anning`` command line."""
