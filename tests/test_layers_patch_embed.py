import torch

from vlm_encoders.geometry import patch_grid
from vlm_encoders.layers_patch_embed import PatchEmbed, patchify, unpatchify


def test_conv_patch_embed_equals_a_linear_layer_on_patchified_pixels():
    embed = PatchEmbed(3, 24, patch_size=5, bias=True)
    x = torch.randn(2, 3, 23, 31)  # remainders of 3 and 1 pixels are dropped
    tokens, grid = embed(x)
    assert grid == patch_grid(23, 31, 5) == (4, 6)
    linear = patchify(x, 5) @ embed.proj.weight.reshape(24, -1).T + embed.proj.bias
    torch.testing.assert_close(tokens, linear, atol=1e-5, rtol=1e-5)


def test_unpatchify_inverts_patchify():
    x = torch.randn(2, 3, 20, 30)
    torch.testing.assert_close(unpatchify(patchify(x, 5), (4, 6), 5, 3), x)
