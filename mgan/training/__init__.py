"""MGAN training (paper Sec. 3.2 and 5), the engine behind ``python -m mgan.train``.

The modules, each importing only those above it:

- :mod:`mgan.training.config`: the experiment's YAML as dataclasses, and the inputs it names;
- :mod:`mgan.training.stages`: the cached stages (MDAN targets -> paired crops) and their keys;
- :mod:`mgan.training.trainer`: the G/D loop on those crops, its checkpoints and sample grids;
- :mod:`mgan.training.release`: G as a small ``safetensors`` file for :mod:`mgan.decode`.

Run folders, ``metrics.jsonl`` and wandb are :mod:`mgan.runs`, shared with the other trainers.
"""
