"""The run engine: one ``RunEngine`` base (prepare, observe, load, drain, facts, result) and
the pieces every kind of run shares: Locust's processes, the recorder, the broker sampler,
live metrics and the run directory writer. The reference-stack run and ``run backlog`` are
kinds of it here; the black-box kinds live in ``rabbitscale.blackbox``."""
