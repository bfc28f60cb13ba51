using Ddpm.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Logging;

/// <summary>
/// TensorBoard event files in a run folder (<c>tensorboard --logdir runs</c> shows one run per folder), written by
/// TorchSharp's <c>torch.utils.tensorboard.SummaryWriter</c>: loss, learning rate and img/s per step, the epoch's mean
/// loss and a sample grid per epoch. A resumed run adds a new event file beside the old ones; TensorBoard merges them.
/// </summary>
/// <remarks>
/// Checked against TorchSharp 0.107.0 (tests/Ddpm.Tests/Server/TensorBoardTests.cs reads the files back with an
/// independent CRC-32C): records are framed and checksummed correctly; scalar wall times are whole Unix seconds; the
/// file's leading <c>brain.Event:2</c> record carries .NET ticks as its wall time (TensorBoard plots from the summary
/// records, so the charts are unaffected); the file is opened and closed for each record.
/// </remarks>
public sealed class TensorBoardLog
{
    private readonly SummaryWriter _writer;

    /// <summary>Starts a new event file in <paramref name="directory"/> (created when missing).</summary>
    public TensorBoardLog(string directory)
    {
        System.IO.Directory.CreateDirectory(directory);
        _writer = utils.tensorboard.SummaryWriter(directory);
        LogDirectory = _writer.LogDir;
    }

    /// <summary>The folder the event file is in.</summary>
    public string LogDirectory { get; }

    /// <summary>One optimizer step: <c>train/loss</c>, <c>train/lr</c>, <c>train/images_per_s</c> at the step
    /// number.</summary>
    public void Step(StepReport step, double learningRate)
    {
        int at = StepIndex(step.Step);
        _writer.add_scalar("train/loss", step.Loss, at);
        _writer.add_scalar("train/lr", (float)learningRate, at);
        _writer.add_scalar("train/images_per_s", (float)step.ImagesPerSecond, at);
    }

    /// <summary>One finished epoch: <c>epoch/mean_loss</c> and <c>epoch/images_per_s</c> at the epoch's last
    /// step.</summary>
    public void Epoch(EpochReport epoch)
    {
        int at = StepIndex(epoch.Step);
        _writer.add_scalar("epoch/mean_loss", (float)epoch.MeanLoss, at);
        _writer.add_scalar("epoch/images_per_s", (float)epoch.ImagesPerSecond, at);
    }

    /// <summary>A PNG file (e.g. a sample grid) under <paramref name="tag"/> at <paramref name="step"/>.</summary>
    public void Image(string tag, string pngPath, long step) => _writer.add_img(tag, pngPath, StepIndex(step));

    // TorchSharp's writer takes an int step; a run of more than 2^31 steps is not a case to plan for, but clamp anyway.
    private static int StepIndex(long step) => (int)Math.Clamp(step, 0, int.MaxValue);
}
