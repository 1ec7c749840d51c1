"""The chest study's elastix parameter files: parsed as elastix reads them, holding the AC-RegNet authors'
published values."""

import pytest

from medrepro.studies.chest.parameters import ELASTIX_DIR, PUBLISHED_MAPS, published_map


@pytest.mark.parametrize("name", PUBLISHED_MAPS)
def test_parser_agrees_with_elastix_reader(name):
    import itk

    reader = itk.ParameterObject.New()
    reader.ReadParameterFile(str(ELASTIX_DIR / f"{name}.txt"))
    expected = {key: list(values) for key, values in dict(reader.GetParameterMap(0)).items()}
    assert published_map(name) == expected


def test_similarity_map_holds_published_values():
    pmap = published_map("similarity")
    expected = {
        "Registration": ["MultiResolutionRegistration"], "Transform": ["SimilarityTransform"],
        "Metric": ["AdvancedNormalizedCorrelation"], "Optimizer": ["AdaptiveStochasticGradientDescent"],
        "NumberOfResolutions": ["4"], "FixedImagePyramid": ["FixedRecursiveImagePyramid"],
        "MovingImagePyramid": ["MovingRecursiveImagePyramid"], "MaximumNumberOfIterations": ["1000"],
        "NumberOfSpatialSamples": ["2048"], "NewSamplesEveryIteration": ["true"], "ImageSampler": ["Random"],
        "AutomaticScalesEstimation": ["true"], "AutomaticTransformInitialization": ["true"],
        "AutomaticTransformInitializationMethod": ["GeometricalCenter"], "Interpolator": ["BSplineInterpolator"],
        "BSplineInterpolationOrder": ["1"], "FinalBSplineInterpolationOrder": ["3"], "DefaultPixelValue": ["0"],
    }
    assert {key: pmap.get(key) for key in expected} == expected


def test_bspline_map_holds_published_values():
    pmap = published_map("bspline")
    expected = {
        "Registration": ["MultiMetricMultiResolutionRegistration"], "Transform": ["BSplineTransform"],
        "Metric": ["AdvancedNormalizedCorrelation", "TransformBendingEnergyPenalty"],
        "Metric0Weight": ["1.0"], "Metric1Weight": ["2.0"], "FinalGridSpacingInVoxels": ["1", "1"],
        "NumberOfResolutions": ["3"], "ImagePyramidSchedule": ["8", "8", "4", "4", "2", "2"],
        "FixedImagePyramid": ["FixedSmoothingImagePyramid"], "MovingImagePyramid": ["MovingSmoothingImagePyramid"],
        "Optimizer": ["AdaptiveStochasticGradientDescent"], "MaximumNumberOfIterations": ["1000"],
        "MaximumStepLength": ["0.29"], "NumberOfSpatialSamples": ["2048"], "NewSamplesEveryIteration": ["true"],
        "BSplineInterpolationOrder": ["3"], "FinalBSplineInterpolationOrder": ["3"],
    }
    assert {key: pmap.get(key) for key in expected} == expected
