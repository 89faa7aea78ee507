"""Pieces of the operator benchmark (bench/operator_bench.py): a counting API proxy, a stand-in
of the Ray Job REST API, and /proc sampling of the operator process."""
