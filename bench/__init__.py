"""Benchmark tools for aigw: a fast mock upstream, load generators and the runner."""
