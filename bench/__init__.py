"""`make bench` and `make chaos`: measurements and fault injection on real sweeps, run as modules
(`python -m bench.chaos network`) from the repository root; not collected by pytest."""
