using Ddpm.Configuration;

namespace Ddpm.Tests.Models;

/// <summary>Model configs shared by the tests.</summary>
public static class TestModels
{
    /// <summary>The PyTorch fixtures' config (276,193 parameters).</summary>
    public static UNetOptions FixtureConfig => new()
    {
        ImChannels = 1,
        ImSize = 28,
        DownChannels = [16, 32, 32, 32],
        MidChannels = [32, 32, 32],
        DownSample = [true, true, false],
        TimeEmbDim = 32,
        NumDownLayers = 1,
        NumMidLayers = 1,
        NumUpLayers = 1,
        NumHeads = 4,
    };

    /// <summary>A tiny U-Net for training, checkpoint and sampling tests.</summary>
    public static UNetOptions Tiny(int imSize = 16, int channels = 1) => new()
    {
        ImChannels = channels,
        ImSize = imSize,
        DownChannels = [8, 16, 16, 16],
        MidChannels = [16, 16, 16],
        DownSample = [true, true, false],
        TimeEmbDim = 16,
        NumDownLayers = 1,
        NumMidLayers = 1,
        NumUpLayers = 1,
        NumHeads = 4,
    };
}
