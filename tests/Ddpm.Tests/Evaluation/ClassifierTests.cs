using Ddpm.Data;
using Ddpm.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

/// <summary>The classifier's architecture, training loop and cache on a tiny synthetic digit-like set (the full MNIST
/// run is not a unit test).</summary>
public sealed class ClassifierTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ddpm-eval-clf-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_classifier_maps_28x28_images_to_84_features_and_10_probabilities()
    {
        using var model = new MnistClassifier();
        using var x = zeros(3, 1, 28, 28);
        using var logits = model.forward(x);
        Assert.Equal(new long[] { 3, 10 }, logits.shape);
        using var outputs = model.Embed(x);
        Assert.Equal(new long[] { 3, MnistClassifier.FeatureDim }, outputs.Features.shape);
        Assert.Equal(1.0, outputs.Probabilities.sum(1)[0].item<double>(), 1e-9);
        Assert.Throws<ArgumentException>(() => model.Embed(zeros(2, 3, 28, 28)));
    }

    [Fact]
    public void Training_on_a_small_set_learns_it_and_the_store_caches_and_reloads_the_weights()
    {
        using var train = SquareDigits.Make(300, 1);
        using var test = SquareDigits.Make(100, 2);
        var store = new ClassifierStore(_dir);
        Assert.False(store.IsTrained);
        var (model, info) = store.Train(train, test, new ClassifierTrainingOptions { Epochs = 2, BatchSize = 32, Lr = 3e-3 });
        using (model)
        {
            Assert.True(info.TestAccuracy >= 0.9, $"accuracy {info.TestAccuracy}");
            Assert.True(store.IsTrained);
            var (loaded, loadedInfo) = store.Load();
            using (loaded)
            {
                Assert.Equal(info.TestAccuracy, loadedInfo.TestAccuracy);
                Assert.Equal(info.TestAccuracy, ClassifierTraining.Accuracy(loaded, test));
                using var a = model.Embed(test.Images);
                using var b = loaded.Embed(test.Images);
                Assert.True(a.Features.allclose(b.Features));
            }
        }
    }

    [Fact]
    public void Loading_a_missing_classifier_says_how_to_train_one()
    {
        var e = Assert.Throws<DataException>(() => new ClassifierStore(_dir).Load());
        Assert.Contains("ddpm classifier train", e.Message);
    }
}
