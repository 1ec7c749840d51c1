"""Geometry in 2-D and 3-D: dense and affine warping, boxes and points, elastix registration, and intensity
thresholds."""
