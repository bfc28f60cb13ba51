namespace Ddpm.Tests.Reliability;

internal static class ReliabilityConfigs
{
    /// <summary>The tiny 8×8 U-Net on the synthetic bars (512 images) as a YAML file for the CLI.</summary>
    public static string TinyYaml(int batchSize = 8, int numEpochs = 1000, string extraTrain = "") => $"""
        dataset_params:
          name: synthetic
        diffusion_params:
          num_timesteps: 20
          beta_start: 0.0001
          beta_end: 0.2
        model_params:
          im_channels: 1
          im_size: 8
          down_channels: [8, 16, 16, 16]
          mid_channels: [16, 16, 16]
          down_sample: [True, True, False]
          time_emb_dim: 16
          num_down_layers: 1
          num_mid_layers: 1
          num_up_layers: 1
          num_heads: 4
        train_params:
          task_name: 'reliability'
          batch_size: {batchSize}
          num_epochs: {numEpochs}
          lr: 0.001
        {extraTrain}
        """;
}
