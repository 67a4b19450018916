"""The engine of ``run``: plan the jobs, dispatch them to an executor, run each one, write rows.

* ``runner``    -- :class:`~benchmark.engine.runner.Runner`: plan, dispatch, ``run_job``, write;
                   the run's prepared datasets (device residency, memoised encoder features);
                   its public API (``pretrained``, ``validation_score``, ``release_models``) is
                   what ``tune`` and ``ablate`` build on.
* ``pretrain``  -- the pretrained-model cache (on disk by a hash of what determines the model),
                   with claims so that concurrent workers train each model once.
* ``panel``     -- the few test ECGs with reports and zero-shot scores for the report's panel.
* ``executors`` -- how the jobs run: the cooperative local loop, or a Dask graph; the CLI picks
                   one and hands it to ``Runner.run`` (the runner imports no executor).
* ``clusters``  -- Dask clusters: local worker processes (one GPU each), SLURM.
* ``claims``    -- crash-safe leases on jobs and pretrainings.
* ``tracking``  -- experiment trackers (TensorBoard, MLflow) and the tracked run per variant/seed.
"""
