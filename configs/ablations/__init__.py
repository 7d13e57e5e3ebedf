"""The paper's ablations, one file per table or plot; run with scripts/run_ablation.py.

Each file defines `get_config(arg=None)`, the base config every entry starts from, and `get_sweep(arg=None)`,
a list of entries {'name', 'overrides': ['dotted.key=value', ...], 'paper': {metric: value}}. `METRIC` names the
results.json metric (first present of a tuple) that the report plots beside the paper's 'top1'.
"""
