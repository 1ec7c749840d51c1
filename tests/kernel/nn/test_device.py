"""The one device helper: resolution of a device request and of a model's device."""

import pytest
import torch

from medrepro.nn.device import module_device, place, resolve_device
from medrepro.errors import ConfigError


def test_resolve_device_accepts_names_and_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("gpu0")
    with pytest.raises(ConfigError, match="unsupported device"):
        resolve_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda")


def test_module_device_is_where_the_weights_are_unless_one_is_given():
    model = place(torch.nn.Conv2d(1, 1, 3), torch.device("cpu"))
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    assert module_device(model) == torch.device("cpu")
    assert module_device(torch.nn.Identity()) == torch.device("cpu")  # no weights: the CPU
    assert module_device(model, "cpu") == torch.device("cpu")
