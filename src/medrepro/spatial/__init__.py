"""Geometry in 2-D and 3-D: dense and affine warping, boxes and points, and elastix registration."""
