"""Shapes and architecture of VectorCNN and MaskAutoencoder."""

import pytest
import torch
from torch import nn

from medrepro.studies.chest.networks import MaskAutoencoder, VectorCNN
from medrepro.spatial.warp import to_onehot


@pytest.fixture
def unet():
    torch.manual_seed(0)
    return VectorCNN()


def test_vectorcnn_output_shape(unet):
    assert unet(torch.rand(3, 1, 32, 32), torch.rand(3, 1, 32, 32)).shape == (3, 2, 32, 32)
    assert unet(torch.rand(1, 1, 64, 48), torch.rand(1, 1, 64, 48)).shape == (1, 2, 64, 48)


@pytest.mark.parametrize("height,width", [(30, 32), (36, 36), (32, 20)])
def test_vectorcnn_rejects_sizes_not_divisible_by_8(unet, height, width):
    with pytest.raises(ValueError, match="divisible by 8"):
        unet(torch.rand(1, 1, height, width), torch.rand(1, 1, height, width))


def test_vectorcnn_rejects_mismatched_inputs(unet):
    with pytest.raises(ValueError):
        unet(torch.rand(1, 1, 32, 32), torch.rand(1, 1, 32, 40))
    with pytest.raises(ValueError):
        unet(torch.rand(1, 2, 32, 32), torch.rand(1, 2, 32, 32))


def test_vectorcnn_layers(unet):
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in unet.modules())
    convs = [m for m in unet.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert [block.conv2.out_channels for block in unet.encoder] == [16, 32, 64, 128]
    assert [block.up_conv.out_channels for block in unet.decoder] == [64, 32, 16]
    assert unet.encoder[0].conv1.in_channels == 2 and unet.out_conv.out_channels == 2


def test_vectorcnn_dropout_only_in_training(unet):
    moving, fixed = torch.rand(2, 2, 1, 32, 32)
    unet.eval()
    with torch.no_grad():
        assert torch.equal(unet(moving, fixed), unet(moving, fixed))
        single = unet(moving[:1], fixed[:1])
        batch = unet(moving, fixed)
    torch.testing.assert_close(single, batch[:1], atol=1e-5, rtol=1e-5)  # no batch coupling
    unet.train()
    with torch.no_grad():
        assert not torch.equal(unet(moving, fixed), unet(moving, fixed))


def test_autoencoder_shapes_and_code_dimension():
    torch.manual_seed(0)
    model = MaskAutoencoder(n_classes=4, size=64).eval()
    onehot = to_onehot(torch.randint(0, 4, (3, 64, 64)), 4)
    code = model.encode(onehot)
    assert code.shape == (3, 32)
    assert model.decode(code).shape == (3, 4, 64, 64)
    assert model(onehot).shape == (3, 4, 64, 64)
    assert model.encoder_linear.in_features == (64 // 8) ** 2


def test_autoencoder_layers():
    model = MaskAutoencoder(n_classes=3, size=32)
    encoder_convs = [m for m in model.encoder_cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in encoder_convs] == [16, 16, 32, 32, 1]
    assert [c.stride[0] for c in encoder_convs] == [2, 1, 2, 1, 2]
    decoder_convs = [m for m in model.decoder_cnn.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in decoder_convs] == [32, 16, 16, 3]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    assert isinstance(model.decoder_cnn[-1], nn.Conv2d)  # logits: no batch norm, no activation


def test_autoencoder_rejects_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="divisible by 8"):
        MaskAutoencoder(n_classes=3, size=36)
    model = MaskAutoencoder(n_classes=3, size=32)
    with pytest.raises(ValueError):
        model.encode(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError):
        model.encode(torch.zeros(1, 3, 64, 64))
