"""The networks on the stored test patches: per-patch predictions (the error table and the claims read them) and the
first fully connected layer's features (Fig. 4's t-SNE, the nearest neighbours of Figs. 5 and 6).

A prediction row is one test patch: its database ``patch_id`` and ``image_id``, its ``class`` (1-4), its ``label``
for the network (Detector: C1-C3 positive; Segmentator: C1 positive), P(positive) and whether the argmax
(P > 0.5) is right. Every seed's networks see the same test patches, drawn once by the extraction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from medrepro.studies.microcalc.networks import MicrocalcNet
from medrepro.studies.microcalc.patchdb import PatchSet
from medrepro.studies.microcalc.training import PREDICTION_BATCH, in_batches, predict

PREDICTION_COLUMNS = ["network", "convolution", "seed", "patch_id", "image_id", "class", "label", "probability",
                      "correct"]
#: The classifier head's layers up to the first fully connected layer's activation (Flatten, Linear, BatchNorm,
#: activation): its output is the 64 features of the paper's Fig. 4.
FEATURE_LAYERS = 4


def patch_predictions(model: MicrocalcNet, patches: PatchSet, network: str, convolution: str, seed: int
                      ) -> pd.DataFrame:
    """One row per patch (:data:`PREDICTION_COLUMNS`) of ``network`` (detector, segmentator) with ``convolution``
    (same, valid) trained with ``seed``."""
    probability = predict(model, patches.pixels)
    label = patches.labels(network)
    return pd.DataFrame({
        "network": network, "convolution": convolution, "seed": int(seed), "patch_id": patches.ids,
        "image_id": patches.image_ids, "class": patches.classes,
        "label": label, "probability": probability.astype(np.float64),
        "correct": ((probability > 0.5).astype(np.int64) == label).astype(np.int64),
    }, columns=PREDICTION_COLUMNS)


def fc_features(model: MicrocalcNet, pixels: np.ndarray, batch_size: int = PREDICTION_BATCH) -> np.ndarray:
    """(n, hidden) float32: the first fully connected layer's activations of each patch (eval mode)."""
    head = model.classifier[:FEATURE_LAYERS]
    out = in_batches(model, pixels, lambda m, x: head(m.features(x)), batch_size)
    return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, model.hidden), np.float32)
