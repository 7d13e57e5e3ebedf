"""The paper's ablations as sweeps: what an ablation file holds (`spec.py`), running its entries (`sweep.py`) and
tabulating and plotting them beside the paper (`report.py`)."""
