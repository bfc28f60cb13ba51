using System.Diagnostics;
using Ddpm.Data;
using Ddpm.Runtime;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>Fits <see cref="MnistClassifier"/> by minimising cross-entropy −log p(y|x) with Adam, and measures
/// accuracy.</summary>
public static class ClassifierTraining
{
    /// <summary>
    /// Trains <paramref name="model"/> in place on the labelled <paramref name="train"/> set (a fresh permutation per
    /// epoch from a generator seeded by (seed, epoch)). <paramref name="log"/> receives one line per epoch. Returns the
    /// seconds spent.
    /// </summary>
    public static double Train(MnistClassifier model, ImageDataset train, ClassifierTrainingOptions options,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        TorchSharpPatch.EnsureApplied();
        options.Validate();
        if (train.Labels is null) throw new DataException(train.Description, "the classifier needs labelled images");
        MnistClassifier.CheckImages(train.Images.shape, train.Description);
        long n = options.MaxTrainImages > 0 ? Math.Min(options.MaxTrainImages, train.Count) : train.Count;
        var device = model.parameters().First().device;
        using var optimizer = optim.Adam(model.parameters(), options.Lr);
        var clock = Stopwatch.StartNew();
        for (int epoch = 1; epoch <= options.Epochs; epoch++)
        {
            if (epoch == options.Epochs && options.Epochs > 1)
                foreach (var g in optimizer.ParamGroups) g.LearningRate = options.Lr * 0.1;
            model.train();
            using var g0 = new Generator(unchecked((ulong)options.Seed * 1_000_003UL + (ulong)epoch), new Device("cpu"));
            using var order = randperm(n, dtype: int64, generator: g0);
            double lossSum = 0;
            long correct = 0, steps = 0;
            for (long start = 0; start < n; start += options.BatchSize)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var idx = order.narrow(0, start, Math.Min(options.BatchSize, n - start));
                var x = train.Batch(idx, device);
                var y = train.BatchLabels(idx, device)!;
                optimizer.zero_grad();
                var logits = model.forward(x);
                var loss = nn.functional.cross_entropy(logits, y);
                loss.backward();
                optimizer.step();
                lossSum += loss.item<float>();
                correct += logits.argmax(1).eq(y).sum().item<long>();
                steps++;
                NativeGarbage.CollectIfDue();
            }
            log?.Invoke(FormattableString.Invariant(
                $"classifier epoch {epoch}/{options.Epochs}: loss {lossSum / steps:F4}, train accuracy {100.0 * correct / n:F2}%, {clock.Elapsed.TotalSeconds:F0} s"));
        }
        model.eval();
        return clock.Elapsed.TotalSeconds;
    }

    /// <summary>Share of <paramref name="data"/>'s images whose arg-max class equals the label.</summary>
    public static double Accuracy(MnistClassifier model, ImageDataset data, int batchSize = 1000)
    {
        TorchSharpPatch.EnsureApplied();
        if (data.Labels is null) throw new DataException(data.Description, "accuracy needs labelled images");
        MnistClassifier.CheckImages(data.Images.shape, data.Description);
        model.eval();
        using var noGrad = no_grad();
        var device = model.parameters().First().device;
        long correct = 0;
        for (long start = 0; start < data.Count; start += batchSize)
        {
            using var scope = NewDisposeScope();
            var idx = arange(start, Math.Min(start + batchSize, data.Count), dtype: int64);
            var pred = model.forward(data.Batch(idx, device)).argmax(1).cpu();
            correct += pred.eq(data.Labels.index_select(0, idx)).sum().item<long>();
            NativeGarbage.CollectIfDue();
        }
        return (double)correct / data.Count;
    }
}
