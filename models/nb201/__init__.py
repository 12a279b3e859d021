"""The NAS-Bench-201 cell space: its data, cell genotype and named cells (arch.py), ops and network (net.py),
SearchSpace (space.py), pictures (pictures.py) and the reader of the benchmark's accuracy table (table.py; the
table itself ships in nb201_table/)."""
