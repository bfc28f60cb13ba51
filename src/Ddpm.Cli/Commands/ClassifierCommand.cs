using System.CommandLine;
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
        train.SetAction(p => Train(new ClassifierStore(p.GetValue(dir)!), p.GetValue(epochs), p.GetValue(seed), p.GetValue(force)));
        var testDir = DirOption();
        var test = new Command("test", "Measure the cached classifier on the MNIST test set and show the metric anchors") { testDir };
        test.SetAction(p => Test(new ClassifierStore(p.GetValue(testDir)!)));
        return new Command("classifier", "The MNIST classifier behind 'ddpm eval''s sample-quality metrics") { train, test };
    }

    private static Option<string> DirOption() =>
        new("--dir") { Description = "MNIST folder; the classifier is cached here", DefaultValueFactory = _ => "data/mnist" };

    private static int Train(ClassifierStore store, int epochs, long seed, bool force)
    {
        if (store.IsTrained && !force)
        {
            var (cached, info) = store.Load();
            cached.Dispose();
            Console.Error.WriteLine($"a trained classifier is already cached in {store.Directory} (use --force to retrain)");
            PrintInfo(store, info);
            return CliApp.Ok;
        }
        var options = new ClassifierTrainingOptions { Epochs = epochs, Seed = seed };
        var (trained, anchors) = store.TrainWithAnchors(new MnistSource { Log = Console.Error.WriteLine }, options, Console.Error.WriteLine);
        PrintInfo(store, trained);
        if (trained.TestAccuracy < 0.99)
            Console.Error.WriteLine("warning: test accuracy is below 99.0%; consider 'ddpm classifier train --force --epochs N' with more epochs");
        foreach (var line in EvaluationText.Anchors(anchors)) Console.WriteLine(line);
        return CliApp.Ok;
    }

    private static int Test(ClassifierStore store)
    {
        var (accuracy, images, info, anchors) = store.Test(new MnistSource { Log = Console.Error.WriteLine }, Console.Error.WriteLine);
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"test accuracy {100 * accuracy:F2}% on {images:N0} MNIST test images; recorded at training: {100 * info.TestAccuracy:F2}%"));
        foreach (var line in EvaluationText.Anchors(anchors)) Console.WriteLine(line);
        return CliApp.Ok;
    }

    private static void PrintInfo(ClassifierStore store, ClassifierInfo info) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"classifier {store.WeightsPath}: test accuracy {100 * info.TestAccuracy:F2}% ({info.TestImages:N0} images), " +
            $"{info.Epochs} epochs on {info.TrainImages:N0} images in {info.TrainSeconds:F1} s, seed {info.Seed}"));
}
