"""Aggregated local results (the paper's Fig. 1): the x0.5 classifier evaluated on a grid over the base image.

The paper evaluates the classifier "at moving strides of 64 pixels" over the base image and feeds the collected
predictions to the heatmap model, whose output is 32 x 32. Here the stride is counted in native pixels of the
base image, ``base / grid`` (64 over the paper's 2048 crop), so that the grid is exactly the heatmap's 32 x 32:
grid cell (i, j) holds P(findings) of the patch centred on native pixel ``((i + 1/2) stride, (j + 1/2) stride)``.

:func:`local_results` cuts every grid patch at once and classifies them in batches; :func:`local_results_loop`
classifies them one by one, the reference it must equal (tests; benchmarks/bench_mammo_tissue.py times both).
"""

from __future__ import annotations

import numpy as np
import torch

from medrepro.studies.mammo_tissue import patches


def grid_positions(base: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Native (rows, cols), each grid x grid, of the grid cells' centres (the pixel at or before the centre)."""
    centres = np.floor((np.arange(grid) + 0.5) * base / grid).astype(np.int64)
    rows, cols = np.meshgrid(centres, centres, indexing="ij")
    return rows, cols


@torch.no_grad()
def local_results(model: torch.nn.Module, padded: np.ndarray, factor: float, patch: int, base: int, grid: int,
                  batch_size: int | None = None, device: torch.device | str = "cpu") -> np.ndarray:
    """(N, grid, grid) P(findings) of each padded magnified image's grid patches, classified in batches (by
    default 1024 on a GPU; on the CPU 64 patches of 32 pixels or as many pixels in larger ones, since larger
    batches leave the cache and run slower: benchmarks/bench_mammo_tissue.py)."""
    if batch_size is None:
        batch_size = max(1, 64 * 32 * 32 // patch ** 2) if torch.device(device).type == "cpu" else 1024
    rows, cols = grid_positions(base, grid)
    r, c = patches.magnified_position(rows.ravel(), factor), patches.magnified_position(cols.ravel(), factor)
    out = np.empty((len(padded), grid * grid), dtype=np.float32)
    for i in range(len(padded)):
        cut = patches.cut(padded, np.full(r.size, i), r, c, patch)
        for start in range(0, r.size, batch_size):
            x = torch.from_numpy(cut[start:start + batch_size])[:, None].to(device)
            out[i, start:start + batch_size] = torch.softmax(model(x), dim=1)[:, 1].cpu().numpy()
    return out.reshape(len(padded), grid, grid)


@torch.no_grad()
def local_results_loop(model: torch.nn.Module, padded: np.ndarray, factor: float, patch: int, base: int,
                       grid: int) -> np.ndarray:
    """The same, one patch at a time: the patch-by-patch loop of the paper's description."""
    rows, cols = grid_positions(base, grid)
    out = np.empty((len(padded), grid, grid), dtype=np.float32)
    half = patch // 2
    for i in range(len(padded)):
        for a in range(grid):
            for b in range(grid):
                r = int(patches.magnified_position(rows[a, b], factor)) + patch - half
                c = int(patches.magnified_position(cols[a, b], factor)) + patch - half
                x = torch.from_numpy(np.ascontiguousarray(padded[i, r:r + patch, c:c + patch],
                                                          dtype=np.float32))[None, None]
                out[i, a, b] = torch.softmax(model(x), dim=1)[0, 1]
    return out
