"""Dense warping of images and label maps by a displacement field in pixels (voxels), in 2-D and 3-D,
and 2-D affine resampling by a matrix in pixel coordinates (its conventions are stated where it starts).

For output pixel (x, y) (x = column, y = row) the warped image is the moving
image sampled at ``(x + d_x(x, y), y + d_y(x, y))``, where channel 0 of the
displacement is ``d_x`` and channel 1 is ``d_y``; in 3-D channel 2 is
``d_z`` along the slice axis (arrays are (D, H, W) = (z, y, x)). Sampling
positions are normalised to [-1, 1] with ``align_corners=True`` (pixel
centres at the ends), matching ``torch.nn.functional.grid_sample``, whose
"bilinear" mode is trilinear on 5-D input.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def identity_grid(
    *shape: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel coordinates of an (H, W) or (D, H, W) grid as a (1, n, ...) field: channel 0 = x, 1 = y (2 = z)."""
    if len(shape) not in (2, 3):
        raise ValueError(f"identity_grid takes (H, W) or (D, H, W), got {shape}")
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")  # (z,) y, x
    return torch.stack(grids[::-1]).unsqueeze(0)


def spatial_dims(tensor: torch.Tensor) -> int:
    """2 for a (B, C, H, W) tensor, 3 for (B, C, D, H, W); ValueError otherwise."""
    if tensor.ndim not in (4, 5):
        raise ValueError(f"expected (B, C, H, W) or (B, C, D, H, W), got shape {tuple(tensor.shape)}")
    return tensor.ndim - 2


def _check_pair(image: torch.Tensor, displacement: torch.Tensor) -> None:
    n = spatial_dims(image)
    if displacement.ndim != image.ndim or displacement.shape[1] != n:
        layout = "(B, 2, H, W)" if n == 2 else "(B, 3, D, H, W)"
        raise ValueError(f"displacement must be {layout}, got shape {tuple(displacement.shape)}")
    if image.shape[0] != displacement.shape[0] or image.shape[2:] != displacement.shape[2:]:
        raise ValueError(
            f"image {tuple(image.shape)} and displacement {tuple(displacement.shape)} differ in batch or size"
        )
    if min(image.shape[2:]) < 2:
        raise ValueError(f"image must be at least 2 pixels along every axis, got {tuple(image.shape[2:])}")


def sampling_grid(displacement: torch.Tensor) -> torch.Tensor:
    """Displacement (B, n, ...) in pixels -> ``grid_sample`` grid (B, ..., n) in [-1, 1], x first."""
    shape = displacement.shape[2:]
    coords = identity_grid(*shape, device=displacement.device, dtype=displacement.dtype) + displacement
    sizes = shape[::-1]  # x, y (, z)
    normalised = [2.0 * coords[:, axis] / (size - 1) - 1.0 for axis, size in enumerate(sizes)]
    return torch.stack(normalised, dim=-1)


def warp(
    image: torch.Tensor, displacement: torch.Tensor, mode: str = "bilinear", padding_mode: str = "zeros"
) -> torch.Tensor:
    """Warp (B, C, H, W) or (B, C, D, H, W) ``image`` by ``displacement``; outside the image reads 0."""
    _check_pair(image, displacement)
    grid = sampling_grid(displacement.to(image.dtype))
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding_mode, align_corners=True)


def warp_onehot(onehot: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Bi/trilinearly warp one-hot (or probability) channels; the result stays a distribution.

    Interpolation weights sum to one, so channels that sum to one at every
    pixel still do after warping, provided no weight falls outside the image.
    Zero padding would lose that mass near the border; ``padding_mode="border"``
    instead repeats the edge pixels, i.e. a position outside the image takes
    the label of the nearest edge pixel.
    """
    return warp(onehot, displacement, mode="bilinear", padding_mode="border")


def to_onehot(labels: torch.Tensor, n_classes: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H, W) or (B, D, H, W) integer labels in [0, n_classes) -> (B, n_classes, ...) one-hot."""
    if labels.ndim not in (3, 4):
        raise ValueError(f"labels must be (B, H, W) or (B, D, H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
        raise ValueError(
            f"labels span [{int(labels.min())}, {int(labels.max())}], "
            f"outside [0, {n_classes - 1}] for {n_classes} classes"
        )
    channels_last = F.one_hot(labels, n_classes)
    return channels_last.permute(0, labels.ndim, *range(1, labels.ndim)).to(dtype)


def warp_labels(labels: torch.Tensor, displacement: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Warp integer labels: one-hot warping, then the most probable class (ties go to the lower label)."""
    onehot = to_onehot(labels, n_classes, dtype=displacement.dtype)
    return warp_onehot(onehot, displacement).argmax(dim=1)


# --- 2-D affine warping in pixel coordinates ---------------------------------------------------
#
# A 2x3 matrix ``[A | t]`` maps an output pixel position to the input position
# it samples (output -> input, as ``F.affine_grid``'s theta does), x = column
# first. Positions are continuous with the pixel-edge convention of
# ``medrepro.spatial.boxes``: an (H, W) image spans [0, W] x [0, H] and pixel (i, j) is
# centred at (j + 0.5, i + 0.5). That is ``align_corners=False``: normalised
# -1 and +1 are the outer edges of the first and last pixels, so
# ``n = 2 * x / W - 1``. Input and output grids may differ in size; the
# matrix is in each grid's own pixels (a moving image resampled onto a fixed
# image's grid). Unlike ``warp`` above, which puts pixel centres at integers.


def _grid_shape(shape) -> tuple[int, int]:
    shape = tuple(shape)
    if len(shape) < 2 or int(shape[-2]) < 1 or int(shape[-1]) < 1:
        raise ValueError(f"a grid shape must end in (H, W) with positive sizes, got {shape}")
    return int(shape[-2]), int(shape[-1])


def _check_affine(matrix: torch.Tensor) -> torch.Tensor:
    if matrix.ndim < 2 or tuple(matrix.shape[-2:]) != (2, 3):
        raise ValueError(f"an affine matrix must be (..., 2, 3), got shape {tuple(matrix.shape)}")
    return matrix if matrix.is_floating_point() else matrix.to(torch.get_default_dtype())


def _homogeneous(matrix: torch.Tensor) -> torch.Tensor:
    """(..., 2, 3) -> (..., 3, 3) with the row (0, 0, 1) appended."""
    last_row = torch.zeros(*matrix.shape[:-2], 1, 3, dtype=matrix.dtype, device=matrix.device)
    last_row[..., 0, 2] = 1.0
    return torch.cat([matrix, last_row], dim=-2)


def _pixel_to_normalised(shape, like: torch.Tensor) -> torch.Tensor:
    """The 3x3 map from pixel positions of an (H, W) grid to ``align_corners=False`` normalised ones."""
    height, width = _grid_shape(shape)
    return torch.tensor(
        [[2.0 / width, 0.0, -1.0], [0.0, 2.0 / height, -1.0], [0.0, 0.0, 1.0]], dtype=like.dtype, device=like.device
    )


def pixel_to_theta(matrix: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """Pixel matrix (..., 2, 3) (output -> input pixels) -> ``F.affine_grid`` theta, ``align_corners=False``."""
    matrix = _check_affine(torch.as_tensor(matrix))
    to_in = _pixel_to_normalised(in_shape, matrix)
    from_out = torch.linalg.inv(_pixel_to_normalised(out_shape, matrix))
    return (to_in @ _homogeneous(matrix) @ from_out)[..., :2, :]


def theta_to_pixel(theta: torch.Tensor, in_shape, out_shape) -> torch.Tensor:
    """``F.affine_grid`` theta (``align_corners=False``) -> pixel matrix (output -> input pixels)."""
    theta = _check_affine(torch.as_tensor(theta))
    from_in = torch.linalg.inv(_pixel_to_normalised(in_shape, theta))
    to_out = _pixel_to_normalised(out_shape, theta)
    return (from_in @ _homogeneous(theta) @ to_out)[..., :2, :]


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of an invertible 2x3 affine (..., 2, 3): ``[A^-1 | -A^-1 t]``; differentiable."""
    matrix = _check_affine(torch.as_tensor(matrix))
    inverse = torch.linalg.inv(matrix[..., :2])
    return torch.cat([inverse, -(inverse @ matrix[..., 2:])], dim=-1)


def compose_affine(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """``outer`` after ``inner`` as one 2x3 affine: p -> outer(inner(p))."""
    outer = _check_affine(torch.as_tensor(outer))
    inner = _check_affine(torch.as_tensor(inner)).to(outer.dtype)
    return (_homogeneous(outer) @ _homogeneous(inner))[..., :2, :]


def image_centre(shape) -> tuple[float, float]:
    """Centre (x, y) of an (H, W) grid in pixel positions: (W / 2, H / 2)."""
    height, width = _grid_shape(shape)
    return width / 2.0, height / 2.0


def translation_matrix(dx: float, dy: float, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """The 2x3 affine p -> p + (dx, dy)."""
    return torch.tensor([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=dtype or torch.get_default_dtype(), device=device)


def rotation_matrix(
    angle_deg: float,
    centre: tuple[float, float],
    scale: float | tuple[float, float] = 1.0,
    in_centre: tuple[float, float] | None = None,
    dtype: torch.dtype | None = None,
    device=None,
) -> torch.Tensor:
    """The 2x3 affine ``p -> R(angle) S (p - centre) + in_centre`` (in_centre defaults to centre).

    ``R = [[cos, -sin], [sin, cos]]`` in (x, y) and ``S = diag(scale)``. As a
    point map in image coordinates (y pointing down) a positive angle turns
    points clockwise on screen; used as ``affine_warp``'s sampling matrix
    (output -> input) it turns the image content counter-clockwise on screen
    by ``angle_deg`` and shrinks it by ``scale``, about ``centre`` of the
    output grid, which shows ``in_centre`` of the input. ``pixel_to_theta``
    gives the matching ``F.affine_grid`` theta; on a non-square grid a
    rotation in pixels is not a rotation in theta, nor the reverse.
    """
    radians = math.radians(angle_deg)
    sx, sy = scale if hasattr(scale, "__len__") else (scale, scale)
    cos, sin = math.cos(radians), math.sin(radians)
    linear = [[cos * sx, -sin * sy], [sin * sx, cos * sy]]
    cx, cy = centre
    tx, ty = centre if in_centre is None else in_centre
    matrix = [
        [linear[0][0], linear[0][1], tx - linear[0][0] * cx - linear[0][1] * cy],
        [linear[1][0], linear[1][1], ty - linear[1][0] * cx - linear[1][1] * cy],
    ]
    return torch.tensor(matrix, dtype=dtype or torch.get_default_dtype(), device=device)


def _batched_affine(matrix: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    matrix = _check_affine(torch.as_tensor(matrix))
    if matrix.ndim == 2:
        matrix = matrix.unsqueeze(0)
    if matrix.ndim != 3:
        raise ValueError(f"an affine matrix must be (2, 3) or (B, 2, 3), got shape {tuple(matrix.shape)}")
    if batch is not None and matrix.shape[0] != batch:
        if matrix.shape[0] != 1:
            raise ValueError(f"{matrix.shape[0]} matrices for a batch of {batch} images")
        matrix = matrix.expand(batch, 2, 3)
    return matrix


def affine_warp(image: torch.Tensor, matrix: torch.Tensor, out_shape, mode: str = "bilinear") -> torch.Tensor:
    """Resample (B, C, H, W) ``image`` onto an ``out_shape`` (H', W') grid through a pixel matrix.

    Output pixel centre p reads the input at ``matrix @ (p, 1)``
    (``align_corners=False``); positions outside the input read 0.
    ``matrix`` is (2, 3) for the whole batch or (B, 2, 3); differentiable in
    both the image and the matrix.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be (B, C, H, W), got shape {tuple(image.shape)}")
    height, width = _grid_shape(out_shape)
    matrix = _batched_affine(matrix, image.shape[0]).to(device=image.device, dtype=image.dtype)
    theta = pixel_to_theta(matrix, image.shape[-2:], (height, width))
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], height, width], align_corners=False)
    return F.grid_sample(image, grid, mode=mode, padding_mode="zeros", align_corners=False)


def pixel_centres(shape, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Centres (H * W, 2) = (x, y) of an (H, W) grid's pixels, row by row."""
    height, width = _grid_shape(shape)
    dtype = dtype or torch.get_default_dtype()
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dtype, device=device) + 0.5,
        torch.arange(width, dtype=dtype, device=device) + 0.5,
        indexing="ij",
    )
    return torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1)


def warped_support(in_shape, matrix: torch.Tensor, out_shape, margin: float = 0.0) -> torch.Tensor:
    """Boolean (B, 1, H', W'): output pixels whose centre maps inside the input image.

    Inside means ``margin <= x <= W - margin`` and ``margin <= y <= H - margin``
    for the mapped centre (x, y) in the input's pixel positions. With
    ``margin=0.5`` the support keeps only pixels whose bilinear neighbours all
    lie in the input (no blend with the zero padding).
    """
    in_height, in_width = _grid_shape(in_shape)
    height, width = _grid_shape(out_shape)
    matrix = _batched_affine(matrix).detach()
    centres = pixel_centres((height, width), dtype=matrix.dtype, device=matrix.device)
    source = centres @ matrix[:, :, :2].transpose(1, 2) + matrix[:, None, :, 2]
    x, y = source[..., 0], source[..., 1]
    inside = (x >= margin) & (x <= in_width - margin) & (y >= margin) & (y <= in_height - margin)
    return inside.reshape(-1, 1, height, width)


def overlap_mask(
    in_shape,
    matrix: torch.Tensor,
    out_shape,
    fixed_region: torch.Tensor | None = None,
    moving_region: torch.Tensor | None = None,
    margin: float = 0.0,
) -> torch.Tensor:
    """Boolean (B, 1, H', W'): where the warped moving image and the fixed image overlap.

    The moving image's warped support (``warped_support``), intersected with
    the fixed image's own region (``fixed_region``, non-zero = inside, shaped
    (H', W') or broadcastable to (B, 1, H', W'); the whole fixed grid when
    None) and, when given, with the moving image's own region
    (``moving_region`` on the input grid, (H, W) or (B, 1, H, W)) carried by
    ``affine_warp`` and kept where the warped value is at least 0.5.
    """
    mask = warped_support(in_shape, matrix, out_shape, margin=margin)
    if fixed_region is not None:
        fixed_region = torch.as_tensor(fixed_region, device=mask.device)
        if tuple(fixed_region.shape[-2:]) != tuple(mask.shape[-2:]):
            raise ValueError(f"fixed_region {tuple(fixed_region.shape)} does not match the output grid {out_shape}")
        mask = mask & (fixed_region != 0)
    if moving_region is not None:
        moving_region = torch.as_tensor(moving_region, device=mask.device)
        if tuple(moving_region.shape[-2:]) != tuple(_grid_shape(in_shape)):
            raise ValueError(f"moving_region {tuple(moving_region.shape)} does not match the input grid {in_shape}")
        region = moving_region.reshape(-1, 1, *moving_region.shape[-2:]).to(torch.float64)
        matrix = _batched_affine(matrix).detach()
        batch = max(region.shape[0], matrix.shape[0])
        region = region.expand(batch, -1, -1, -1) if region.shape[0] == 1 else region
        matrix = matrix.expand(batch, 2, 3) if matrix.shape[0] == 1 else matrix
        mask = mask & (affine_warp(region, matrix, out_shape) >= 0.5)
    return mask
