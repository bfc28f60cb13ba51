using System.Text.Json;
using Ddpm.Data;
using Ddpm.IO;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// The MNIST classifier cached beside the data: <c>classifier.safetensors</c> (weights), <c>classifier.json</c>
/// (<see cref="ClassifierInfo"/>: test accuracy, how it was trained) and <c>anchors.json</c>
/// (<see cref="QualityAnchors"/>, computed once). Trained only when missing; retraining removes the anchors, which
/// depend on the weights.
/// </summary>
public sealed class ClassifierStore(string directory)
{
    public string Directory { get; } = directory;
    public string WeightsPath => Path.Combine(Directory, "classifier.safetensors");
    public string InfoPath => Path.Combine(Directory, "classifier.json");
    public string AnchorsPath => Path.Combine(Directory, "anchors.json");

    /// <summary>Whether both the weights and their info file are present.</summary>
    public bool IsTrained => File.Exists(WeightsPath) && File.Exists(InfoPath);

    /// <summary>The cached classifier's info (accuracy, training); throws <see cref="DataException"/> when missing,
    /// unreadable or stale.</summary>
    public ClassifierInfo ReadInfo()
    {
        if (!IsTrained) throw new DataException(Directory, "no trained classifier here (run 'ddpm classifier train')");
        ClassifierInfo info;
        try
        {
            info = JsonSerializer.Deserialize<ClassifierInfo>(File.ReadAllText(InfoPath), EvaluationJson.Options)
                ?? throw new DataException(InfoPath, "is empty");
        }
        catch (JsonException e) { throw new DataException(InfoPath, "is not valid classifier info: " + e.Message); }
        if (info.Format != ClassifierInfo.CurrentFormat || info.FeatureDim != MnistClassifier.FeatureDim)
            throw new DataException(InfoPath, $"describes format {info.Format} / {info.FeatureDim} features; this build needs format " +
                $"{ClassifierInfo.CurrentFormat} / {MnistClassifier.FeatureDim}: delete it and retrain");
        return info;
    }

    /// <summary>Loads the cached classifier (eval mode, CPU) and its info; throws <see cref="DataException"/> when
    /// missing or unreadable.</summary>
    public (MnistClassifier Model, ClassifierInfo Info) Load()
    {
        var info = ReadInfo();
        var model = new MnistClassifier();
        try
        {
            model.load_safetensors(WeightsPath, strict: true);
        }
        catch (Exception e) when (e is not DataException)
        {
            model.Dispose();
            throw new DataException(WeightsPath, "cannot be loaded as the MNIST classifier: " + e.Message);
        }
        model.eval();
        return (model, info);
    }

    /// <summary>
    /// Trains a fresh classifier (initialised from <see cref="ClassifierTrainingOptions.Seed"/>) on
    /// <paramref name="train"/>, measures it on <paramref name="test"/>, and caches weights and info atomically.
    /// Returns the model and its info.
    /// </summary>
    public (MnistClassifier Model, ClassifierInfo Info) Train(ImageDataset train, ImageDataset test, ClassifierTrainingOptions options,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        manual_seed(options.Seed);
        var model = new MnistClassifier();
        try
        {
            double seconds = ClassifierTraining.Train(model, train, options, log, cancel);
            double accuracy = ClassifierTraining.Accuracy(model, test);
            var info = new ClassifierInfo
            {
                TestAccuracy = accuracy,
                TestImages = test.Count,
                TrainImages = options.MaxTrainImages > 0 ? Math.Min(options.MaxTrainImages, train.Count) : train.Count,
                Epochs = options.Epochs,
                BatchSize = options.BatchSize,
                Lr = options.Lr,
                Seed = options.Seed,
                TrainSeconds = seconds,
                TrainedAt = DateTimeOffset.UtcNow,
            };
            System.IO.Directory.CreateDirectory(Directory);
            using (var ms = new MemoryStream())
            {
                model.save_safetensors(ms, leaveOpen: true);
                AtomicFile.WriteAllBytes(WeightsPath, ms.ToArray());
            }
            AtomicFile.WriteAllBytes(InfoPath, JsonSerializer.SerializeToUtf8Bytes(info, EvaluationJson.Options));
            if (File.Exists(AnchorsPath)) File.Delete(AnchorsPath);
            return (model, info);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The cached classifier, trained first on MNIST (fetched into <see cref="Directory"/> by
    /// <paramref name="source"/>) when missing.
    /// </summary>
    public async Task<(MnistClassifier Model, ClassifierInfo Info)> EnsureAsync(MnistSource source, ClassifierTrainingOptions? options = null,
        Action<string>? log = null, CancellationToken cancel = default)
    {
        if (IsTrained) return Load();
        log?.Invoke($"no cached classifier in {Directory}: training one on MNIST (once)");
        var (train, test) = await LoadMnistAsync(source, cancel);
        using (train)
        using (test)
            return Train(train, test, options ?? new ClassifierTrainingOptions(), log, cancel);
    }

    /// <summary>The MNIST training and test sets (60,000 and 10,000 labelled images), fetched into
    /// <see cref="Directory"/> if needed.</summary>
    public async Task<(ImageDataset Train, ImageDataset Test)> LoadMnistAsync(MnistSource source, CancellationToken cancel = default)
    {
        var files = await source.EnsureAsync(Directory, cancel);
        var train = IdxReader.Read(files.TrainImages.Path, files.TrainLabels.Path);
        try
        {
            return (train, IdxReader.Read(files.TestImages.Path, files.TestLabels.Path));
        }
        catch
        {
            train.Dispose();
            throw;
        }
    }

    /// <summary>
    /// <c>ddpm classifier train</c>: trains and caches a classifier on MNIST (fetched by <paramref name="source"/>),
    /// then computes and caches the metric anchors with it.
    /// </summary>
    public (ClassifierInfo Info, QualityAnchors Anchors) TrainWithAnchors(MnistSource source, ClassifierTrainingOptions options,
        Action<string>? log = null)
    {
        var (train, test) = LoadMnistAsync(source).GetAwaiter().GetResult();
        using (train)
        using (test)
        {
            var (model, info) = Train(train, test, options, log);
            using (model)
                return (info, Anchors(model, info, train, test, options.Seed, log));
        }
    }

    /// <summary>
    /// <c>ddpm classifier test</c>: the cached classifier's accuracy on the MNIST test set now, its info, and the
    /// anchors (recomputed when missing or computed with another classifier).
    /// </summary>
    public (double Accuracy, long TestImages, ClassifierInfo Info, QualityAnchors Anchors) Test(MnistSource source, Action<string>? log = null)
    {
        var (model, info) = Load();
        using var _ = model;
        var (train, test) = LoadMnistAsync(source).GetAwaiter().GetResult();
        using (train)
        using (test)
        {
            double accuracy = ClassifierTraining.Accuracy(model, test);
            var anchors = LoadAnchors() is { } cached && cached.ClassifierTrainedAt == info.TrainedAt
                ? cached : Anchors(model, info, train, test, 0, log);
            return (accuracy, test.Count, info, anchors);
        }
    }

    private QualityAnchors Anchors(MnistClassifier model, ClassifierInfo info, ImageDataset train, ImageDataset test, long seed, Action<string>? log)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var anchors = QualityAnchors.Compute(model, info, train, test, seed, log);
        SaveAnchors(anchors);
        log?.Invoke(string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"anchors computed in {clock.Elapsed.TotalSeconds:F1} s → {AnchorsPath}"));
        return anchors;
    }

    /// <summary>The cached anchors, or null when not computed yet (or unreadable, so they are recomputed).</summary>
    public QualityAnchors? LoadAnchors()
    {
        if (!File.Exists(AnchorsPath)) return null;
        try { return JsonSerializer.Deserialize<QualityAnchors>(File.ReadAllText(AnchorsPath), EvaluationJson.Options); }
        catch (JsonException) { return null; }
    }

    /// <summary>Caches <paramref name="anchors"/> in <see cref="AnchorsPath"/>.</summary>
    public void SaveAnchors(QualityAnchors anchors) =>
        AtomicFile.WriteAllBytes(AnchorsPath, JsonSerializer.SerializeToUtf8Bytes(anchors, EvaluationJson.Options));
}
