"""Pure verdicts: a run's facts in, its ledger, checks and verdict out. No I/O but reading a
thresholds file and a run's own Locust histograms."""
