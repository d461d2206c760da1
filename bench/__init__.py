"""boltgrad's benchmarks: ``python -m bench`` times workloads in boltgrad and its installed peers (see run.py)."""
