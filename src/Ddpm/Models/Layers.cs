using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>Layer constructors shared by the U-Net's blocks.</summary>
internal static class Layers
{
    /// <summary>
    /// nn.GroupNorm with weight = 1 and bias = 0. TorchSharp 0.107.0 leaves both uninitialized (garbage, sometimes
    /// NaN), unlike PyTorch; this restores PyTorch's initialization.
    /// </summary>
    public static GroupNorm GroupNorm(long channels, long groups = 8)
    {
        var norm = nn.GroupNorm(groups, channels);
        using (no_grad())
        {
            nn.init.ones_(norm.weight!);
            nn.init.zeros_(norm.bias!);
        }
        return norm;
    }

    /// <summary>GroupNorm(8) → SiLU → Conv3×3, the reference's <c>resnet_conv_first/second</c> unit.</summary>
    public static Sequential NormActConv(long inChannels, long outChannels) =>
        nn.Sequential(GroupNorm(inChannels), nn.SiLU(), nn.Conv2d(inChannels, outChannels, 3, stride: 1, padding: 1));
}
