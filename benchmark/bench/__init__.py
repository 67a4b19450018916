"""``python -m benchmark bench``: speed and memory of this suite on this machine, as ratios.

Every figure is measured in the same run, on the current machine, against a reference measured
in that run too (a ratio is robust to a busy or slow machine, an absolute number is not):

1. data path    -- prepared-store batch loading vs wfdb one record at a time (target >= 50x);
                   loader throughput vs encoder training throughput (target >= 20x);
2. frozen LM    -- a METS training step with cached report embeddings vs the frozen LM in the
                   loop (``text_in_loop=True``), for minilm and for BERT-base-sized random-bert;
                   the cache should win by the LM's share of the step;
3. arithmetic   -- encoder training throughput and achieved GFLOP/s (FLOPs counted with
                   ``torch.utils.flop_counter``) against a large matmul's GFLOP/s, at 100/500 Hz,
                   fp32/bf16 (target >= 70 %);
4. memory       -- resident memory while reading and training over a PTB-XL-shaped 500 Hz store
                   (21,799 x 12 x 5,000 float32, 5.2 GB, synthetic, generated once into the cache;
                   ``--quick``: 1,000 records) (target: flat, < 2 GB);
5. scaling      -- epoch time at 1x, 2x, 4x data (target: linear);
7. LM training  -- a METS (MiniLM) training step with the LM frozen (cached embeddings) vs its
                   last 2 layers trained vs all of it (and all with gradient checkpointing):
                   time per step, saved activations and trainable state (parameters, gradients,
                   AdamW moments) per step, peak device memory on a GPU (no target: the price of
                   ``mets[lm_train=...]``);
6. end to end   -- the ``quick`` profile's wall time for the default methods (target <= 10 min on
                   2 CPU cores) and where it goes (the harness's timings.json);
                   ``--quick`` runs a reduced configuration instead (a smoke test);
8. workers      -- the same run through ``run --workers 1`` and ``--workers 2`` (Dask local
                   cluster): the speed-up of two workers (about 2 with two free GPUs or twice the
                   cores; little on 2 shared CPU cores, where both workers compete for them), and
                   on CPU ``--workers 2`` with the cores split between the workers.

One table is printed and written atomically as CSV (``<out>/bench.csv``) with the raw seconds
in ``<out>/bench.json``. What each figure means and this machine's table: docs/performance.md.

The package: :mod:`~benchmark.bench.runner` (the :class:`Bench` that runs the figures in order),
``figures_machine`` (1, 3, 4, 5), ``figures_mets`` (2, 7), ``figures_run`` (6, 8), ``timing``
(measurements other code may call on their own), ``synthetic`` (the synthetic stores) and
``table`` (the printed table, bench.csv and bench.json). The command line is
:mod:`benchmark.cli.bench`.
"""
