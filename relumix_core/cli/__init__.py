"""The ``relumix`` command line: one module per command, shared options in ``common``, the parser in ``main``."""
