"""Command line: ``eprmetrics REAL FAKE``, ``eprmetrics manifold REAL OUT``, ``eprmetrics demo``, ``eprmetrics bench``.

Argument parsing only: values go to :func:`eprmetrics.compute_pr` /
:func:`eprmetrics.compute_epr`, whose checks (:mod:`eprmetrics.validation`)
give the messages; choice lists come from the registries. Every error caused
by the input ends as one line on stderr and exit status 2 (``--debug`` shows
the traceback instead).

Modules: ``parser`` (the argparse tree, value types), ``commands`` (one function per command, calling
the API), ``main`` (dispatch, one-line errors and warnings in CLI terms).
"""

from .main import main

__all__ = ["main"]
