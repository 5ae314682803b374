"""anning_lib: the library behind the Anning zero-carbon park workbench.

One sub-package per concept: ``park`` (asset model), ``store`` (database), ``sim`` (park simulator),
``cli`` (the ``anning`` command). See ``docs/glossary.md`` for names, units and sign conventions.
"""

__version__ = "0.1.0"
