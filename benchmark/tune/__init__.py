"""``tune``: Optuna studies of a method's settings on validation data only.

* ``storage``   -- journal-file or RDB storage with worker heartbeats and retries of dead trials.
* ``objective`` -- the validation objective, scored by the protocols (``Runner.validation_score``).
* ``tuner``     -- :class:`~benchmark.tune.tuner.Tuner`: one worker of one study, its outputs.
* ``spaces``    -- the search space of each method (``register_space`` for plug-ins).

The command line is ``benchmark.cli.tune``.
"""
