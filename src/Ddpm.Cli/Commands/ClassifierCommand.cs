using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Ddpm.Data;
using Ddpm.Evaluation;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm classifier train|test [--dir data/mnist]</c>: the MNIST classifier the evaluation metrics use, cached in --dir
/// beside the MNIST files (trained once; <c>train --force</c> retrains).
/// </summary>
internal static class ClassifierCommand
{
    public static Command Create()
    {
        var dir = DirOption();
        var epochs = new Option<int>("--epochs") { Description = "training epochs", DefaultValueFactory = _ => new ClassifierTrainingOptions().Epochs };
        var seed = new Option<long>("--seed") { Description = "initialisation and data-order seed", DefaultValueFactory = _ => 0 };
        var force = new Option<bool>("--force") { Description = "retrain even when a cached classifier exists" };
        var train = new Command("train", "Train the MNIST classifier (LeNet-5-like) and cache it, its test accuracy and the metric anchors in --dir")
        {
            dir, epochs, seed, force,
        };
        train.SetAction(p => Train(p.GetValue(dir)!, p.GetValue(epochs), p.GetValue(seed), p.GetValue(force)));

        var testDir = DirOption();
        var test = new Command("test", "Measure the cached classifier on the MNIST test set and show the metric anchors") { testDir };
        test.SetAction(p => Test(p.GetValue(testDir)!));
        return new Command("classifier", "The MNIST classifier behind 'ddpm eval''s sample-quality metrics") { train, test };
    }

    private static Option<string> DirOption() =>
        new("--dir") { Description = "MNIST folder; the classifier is cached here", DefaultValueFactory = _ => "data/mnist" };

    private static int Train(string dir, int epochs, long seed, bool force)
    {
        if (epochs < 1) throw new UsageException($"--epochs must be >= 1, got {epochs}");
        var store = new ClassifierStore(dir);
        if (store.IsTrained && !force)
        {
            var (cached, info) = store.Load();
            cached.Dispose();
            Console.Error.WriteLine($"a trained classifier is already cached in {dir} (use --force to retrain)");
            PrintInfo(store, info);
            return CliApp.Ok;
        }
        var (train, testSet) = store.LoadMnistAsync(new MnistSource { Log = Console.Error.WriteLine }).GetAwaiter().GetResult();
        using (train)
        using (testSet)
        {
            var options = new ClassifierTrainingOptions { Epochs = epochs, Seed = seed };
            var (model, trained) = store.Train(train, testSet, options, Console.Error.WriteLine);
            using (model)
            {
                PrintInfo(store, trained);
                if (trained.TestAccuracy < 0.99)
                    Console.Error.WriteLine("warning: test accuracy is below 99.0%; consider 'ddpm classifier train --force --epochs N' with more epochs");
                var clock = Stopwatch.StartNew();
                var anchors = QualityAnchors.Compute(model, trained, train, testSet, seed, Console.Error.WriteLine);
                store.SaveAnchors(anchors);
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"anchors computed in {clock.Elapsed.TotalSeconds:F1} s → {store.AnchorsPath}"));
                EvalTable.PrintAnchors(Console.Out, anchors);
            }
        }
        return CliApp.Ok;
    }

    private static int Test(string dir)
    {
        var store = new ClassifierStore(dir);
        var (model, info) = store.Load();
        using var _ = model;
        var (train, testSet) = store.LoadMnistAsync(new MnistSource { Log = Console.Error.WriteLine }).GetAwaiter().GetResult();
        using (train)
        using (testSet)
        {
            var clock = Stopwatch.StartNew();
            double accuracy = ClassifierTraining.Accuracy(model, testSet);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"test accuracy {100 * accuracy:F2}% on {testSet.Count:N0} MNIST test images ({clock.Elapsed.TotalSeconds:F1} s); recorded at training: {100 * info.TestAccuracy:F2}%"));
            var anchors = store.LoadAnchors();
            if (anchors is null || anchors.ClassifierTrainedAt != info.TrainedAt)
            {
                anchors = QualityAnchors.Compute(model, info, train, testSet, 0, Console.Error.WriteLine);
                store.SaveAnchors(anchors);
            }
            EvalTable.PrintAnchors(Console.Out, anchors);
        }
        return CliApp.Ok;
    }

    private static void PrintInfo(ClassifierStore store, ClassifierInfo info) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"classifier {store.WeightsPath}: test accuracy {100 * info.TestAccuracy:F2}% ({info.TestImages:N0} images), " +
            $"{info.Epochs} epochs on {info.TrainImages:N0} images in {info.TrainSeconds:F1} s, seed {info.Seed}"));
}
