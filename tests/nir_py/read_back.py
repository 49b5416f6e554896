"""Reads a NIR file written by `snnc export --nir` with the Python `nir` package (type checks on)
and prints, as JSON, every node's type, its array parameters' shapes and sums, and the edges."""

import json
import sys

import h5py
import nir
import numpy as np

graph = nir.read(sys.argv[1])
nodes = {}
for name, node in graph.nodes.items():
    arrays = {k: v for k, v in vars(node).items() if isinstance(v, np.ndarray) and k not in ("input_type", "output_type")}
    nodes[name] = {
        "type": type(node).__name__,
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "sums": {k: float(np.sum(v)) for k, v in arrays.items() if v.dtype.kind == "f"},
    }
print(json.dumps({"version": h5py.File(sys.argv[1], "r")["version"][()].decode("utf8"), "nodes": nodes, "edges": [list(e) for e in graph.edges]}))
