"""Adapters for the tools people already use; each is an optional extra and imports its library lazily.

* :mod:`eprmetrics.integrations.torchmetrics` — ``PrecisionRecall``, a torchmetrics ``Metric``
  (``pip install 'eprmetrics[torchmetrics]'``);
* :mod:`eprmetrics.integrations.stylegan` — metric functions for StyleGAN2-ADA / StyleGAN3's
  ``metric_main.register_metric`` (run from their checkout; nothing to install);
* :mod:`eprmetrics.integrations.fidelity` — ``calculate_metrics``, torch-fidelity's inputs,
  extractors and feature cache with our values added (``pip install 'eprmetrics[fidelity]'``).

Importing this package imports none of them, nor their libraries.
"""

__all__: list[str] = []
