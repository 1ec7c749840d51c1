"""Two elastix parameter maps of the kinds the studies run, written out here so that the kernel's elastix tests
need no study's files. Each call returns a new map."""


def similarity() -> dict:
    """2-D similarity transform, normalised cross-correlation, four resolutions."""
    return {
        "FixedImageDimension": ["2"], "MovingImageDimension": ["2"], "FixedInternalImagePixelType": ["float"],
        "MovingInternalImagePixelType": ["float"], "UseDirectionCosines": ["true"],
        "Registration": ["MultiResolutionRegistration"], "Transform": ["SimilarityTransform"],
        "Metric": ["AdvancedNormalizedCorrelation"], "Optimizer": ["AdaptiveStochasticGradientDescent"],
        "ImageSampler": ["Random"], "Interpolator": ["BSplineInterpolator"],
        "ResampleInterpolator": ["FinalBSplineInterpolator"], "Resampler": ["DefaultResampler"],
        "FixedImagePyramid": ["FixedRecursiveImagePyramid"], "MovingImagePyramid": ["MovingRecursiveImagePyramid"],
        "AutomaticScalesEstimation": ["true"], "AutomaticTransformInitialization": ["true"],
        "AutomaticTransformInitializationMethod": ["GeometricalCenter"], "HowToCombineTransforms": ["Compose"],
        "NumberOfResolutions": ["4"], "MaximumNumberOfIterations": ["1000"], "NumberOfSpatialSamples": ["2048"],
        "NewSamplesEveryIteration": ["true"], "MaximumNumberOfSamplingAttempts": ["1000"],
        "RequiredRatioOfValidSamples": ["0.01"], "RandomSeed": ["0"], "BSplineInterpolationOrder": ["1"],
        "FinalBSplineInterpolationOrder": ["3"], "DefaultPixelValue": ["0"], "WriteIterationInfo": ["false"]
    }


def bspline() -> dict:
    """Dense 2-D B-spline, normalised cross-correlation plus bending energy (a multi-metric registration)."""
    return {
        "FixedImageDimension": ["2"], "MovingImageDimension": ["2"], "FixedInternalImagePixelType": ["float"],
        "MovingInternalImagePixelType": ["float"], "UseDirectionCosines": ["true"],
        "Registration": ["MultiMetricMultiResolutionRegistration"], "Transform": ["BSplineTransform"],
        "Metric": ["AdvancedNormalizedCorrelation", "TransformBendingEnergyPenalty"], "Metric0Weight": ["1.0"],
        "Metric1Weight": ["2.0"], "Optimizer": ["AdaptiveStochasticGradientDescent"], "ImageSampler": ["Random"],
        "Interpolator": ["BSplineInterpolator"], "ResampleInterpolator": ["FinalBSplineInterpolator"],
        "Resampler": ["DefaultResampler"], "FixedImagePyramid": ["FixedSmoothingImagePyramid"],
        "MovingImagePyramid": ["MovingSmoothingImagePyramid"], "FinalGridSpacingInVoxels": ["1", "1"],
        "HowToCombineTransforms": ["Compose"], "NumberOfResolutions": ["3"],
        "ImagePyramidSchedule": ["8", "8", "4", "4", "2", "2"], "MaximumNumberOfIterations": ["1000"],
        "MaximumStepLength": ["0.29"], "NumberOfSpatialSamples": ["2048"], "NewSamplesEveryIteration": ["true"],
        "MaximumNumberOfSamplingAttempts": ["1000"], "RequiredRatioOfValidSamples": ["0.01"], "RandomSeed": ["0"],
        "BSplineInterpolationOrder": ["3"], "FinalBSplineInterpolationOrder": ["3"], "DefaultPixelValue": ["0"],
        "WriteIterationInfo": ["false"]
    }
