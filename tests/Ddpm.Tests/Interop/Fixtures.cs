using Ddpm.Configuration;

namespace Ddpm.Tests.Interop;

/// <summary>The PyTorch fixtures in tests/fixtures/pytorch (made by tests/fixtures/make_pytorch_fixtures.py).</summary>
internal static class Fixtures
{
    public static string Pth => TestPaths.Fixture("small_unet.pth");
    public static string Safetensors => TestPaths.Fixture("small_unet.safetensors");
    public static string Io => TestPaths.Fixture("small_unet_io.safetensors");

    /// <summary>The fixtures' model config (<c>MODEL_PARAMS</c> in the script), with a short schedule so sampling tests
    /// are fast.</summary>
    public const string Yaml = """
        diffusion_params:
          num_timesteps: 10
        model_params:
          im_channels: 1
          im_size: 28
          down_channels: [16, 32, 32, 32]
          mid_channels: [32, 32, 32]
          down_sample: [True, True, False]
          time_emb_dim: 32
          num_down_layers: 1
          num_mid_layers: 1
          num_up_layers: 1
          num_heads: 4
        train_params:
          num_samples: 4
          num_grid_rows: 2
        """;

    public static DdpmConfig Config { get; } = DdpmConfig.Parse(Yaml);
}
