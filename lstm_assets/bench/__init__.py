"""``lstm-assets bench``: how fast the pipeline is, measured with the project's own code.

Every section runs the real code path (``core.stages``, ``core.train.fit``, ``core.signals``)
on synthetic demo data written into a temporary folder, and reports figures that hold on a
shared, noisy machine: ratios measured in one run (the project's loop against a reference loop,
alternating; warm against cold; the data stages against a bare read), best-of timings, and the
machine's own measured matmul rate as the yardstick.

Modules, from the bottom up (each imports only modules listed above it, and
``lstm_assets.core``):

- :mod:`.config`: ``BenchSize`` (how big each section runs), ``SECTIONS``, ``REQUIRED_KEYS``
- :mod:`.yardsticks`: FLOPs per window, the machine's matmul rate, machine information
- :mod:`.report`: table rows, JSON-safe values, the Markdown table
- :mod:`.demo`: the demo data sets the sections run on
- :mod:`.reference`: the reference training loop the project's loop is measured against
- :mod:`.context`: ``Bench``, the state of one run that every section fills
- :mod:`.data_stages`: timing raw -> clean -> sequences, the bare read + scale baseline, and
  the ``data`` section
- :mod:`.training`, :mod:`.retrain`, :mod:`.memory` (with its fresh-process probe),
  :mod:`.signals`, :mod:`.scaling`: one CPU section each
- :mod:`.gpu_steps`: the GPU measurements, one step at a time
- :mod:`.gpu`: the ``gpu`` section, also runnable alone (``python -m lstm_assets.bench.gpu``)
- :mod:`.runner`: ``run_bench``, which runs the chosen sections in order
- :mod:`.cli`: the ``bench`` subcommand

Nothing here imports dagster: the GPU part runs on a box that has only the core's libraries.
This module imports nothing, so ``lstm_assets.bench.cli`` loads without torch.
"""
