"""Grids of runs: methods x augmenters x forget scenarios x seeds, resumable, summarised as the paper's tables.

`unlearn bench` and `unlearn tune` are both grids of cells; a cell is one method
(with augmenters and params) unlearning one (scenario, seed). Original and Retrain
are trained once per (scenario, seed) and cached; every finished cell is a JSON
record on disk, so an interrupted grid resumes where it stopped.
"""
