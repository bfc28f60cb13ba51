using Ddpm.Cli;

namespace Ddpm.Tests;

/// <summary>What the in-process CLI tests share: a tiny synthetic-data config and a silenced runner.</summary>
internal static class TinyCli
{
    /// <summary>The tiny U-Net on the synthetic bars (512 images, T = 20 unless <paramref name="timesteps"/>) as a YAML
    /// file for the CLI.</summary>
    public static string Yaml(int imSize = 8, int batchSize = 8, int numEpochs = 1000, string extraTrain = "", string taskName = "tiny", int timesteps = 20) => $"""
        dataset_params:
          name: synthetic
        diffusion_params:
          num_timesteps: {timesteps}
          beta_start: 0.0001
          beta_end: 0.2
        model_params:
          im_channels: 1
          im_size: {imSize}
          down_channels: [8, 16, 16, 16]
          mid_channels: [16, 16, 16]
          down_sample: [True, True, False]
          time_emb_dim: 16
          num_down_layers: 1
          num_mid_layers: 1
          num_up_layers: 1
          num_heads: 4
        train_params:
          task_name: '{taskName}'
          batch_size: {batchSize}
          num_epochs: {numEpochs}
          lr: 0.001
        {extraTrain}
        """;

    /// <summary>Runs <c>ddpm ARGS</c> in-process with stdout silenced; returns the exit code and what it wrote to
    /// stderr.</summary>
    public static (int Code, string Stderr) RunCapturingStderr(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        var err = new StringWriter();
        try
        {
            Console.SetOut(TextWriter.Null);
            Console.SetError(err);
            return (CliApp.Run(args), err.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }

    /// <summary>Runs <c>ddpm ARGS</c> in-process with the console silenced; returns the exit code.</summary>
    public static int Run(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        try
        {
            Console.SetOut(TextWriter.Null);
            Console.SetError(TextWriter.Null);
            return CliApp.Run(args);
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }
}
