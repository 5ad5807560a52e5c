"""Experiments made of runs: find-max, sweep and the model's validation. Each drives any run
engine through a factory that makes one run at a given rate."""
