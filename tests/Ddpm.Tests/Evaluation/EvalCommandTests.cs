using Ddpm.Cli;
using Xunit;

namespace Ddpm.Tests.Evaluation;

/// <summary>Bad command lines fail fast with exit code 2, before any model or data is loaded.</summary>
public sealed class EvalCommandTests
{
    [Fact]
    public void Eval_without_a_checkpoint_or_images_is_a_usage_error() =>
        Assert.Equal(CliApp.Usage, CliApp.Run(["eval"]));

    [Fact]
    public void Eval_with_fewer_samples_than_feature_dimensions_is_a_usage_error() =>
        Assert.Equal(CliApp.Usage, CliApp.Run(["eval", "--checkpoint", "missing.ckpt", "--num", "50"]));

    [Fact]
    public void An_unknown_nll_method_is_a_usage_error() =>
        Assert.Equal(CliApp.Usage, CliApp.Run(["eval", "--checkpoint", "missing.ckpt", "--nll", "sometimes"]));

    [Fact]
    public void A_missing_checkpoint_is_a_failure() =>
        Assert.Equal(CliApp.Failure, CliApp.Run(["eval", "--checkpoint", "/nonexistent/missing.ckpt", "--nll", "none"]));

    [Fact]
    public void A_missing_image_set_is_a_failure_before_any_classifier_or_mnist_work()
    {
        var dir = Directory.CreateTempSubdirectory("ddpm-eval-cli-").FullName;
        try
        {
            var dataDir = Path.Combine(dir, "mnist");
            Assert.Equal(CliApp.Failure, CliApp.Run(["eval", "--images", Path.Combine(dir, "missing"), "--data-dir", dataDir, "--out", Path.Combine(dir, "out")]));
            Assert.False(Directory.Exists(dataDir), "eval fetched MNIST or trained a classifier before checking --images");
            Assert.False(Directory.Exists(Path.Combine(dir, "out")), "a failed eval left an output folder");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
