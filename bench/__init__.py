"""Benchmarks: every figure beside a floor or peer measured in the same run (`make bench`)."""
