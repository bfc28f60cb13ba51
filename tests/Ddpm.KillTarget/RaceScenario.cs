using System.Diagnostics;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Evaluation;
using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.KillTarget;

/// <summary>
/// The TorchSharp race as the library's users meet it: every public entry point (generate, a training epoch, evaluate,
/// the variational bound, classifier training and prediction, checkpoint save and load, weight export and import, the
/// dataset build) runs over and over on several threads at once while one more thread forces garbage collections.
/// Each operation's result is hashed and compared with the same operation's result computed alone before the threads
/// start: every result must match bit for bit. On a TorchSharp.dll without the keep-alive patch a collection during a
/// native call lets the finalizer free a Scalar (or a wrapper) libtorch is reading: the process aborts, an operation
/// throws ("Scalar toFloat", "Unknown scalar type"), or a result differs.
/// <para>Prints <c>alone NAME SECONDS</c> per operation (its second run alone), then after the race one line per
/// operation, <c>op NAME runs wrong</c>, and <c>total RUNS WRONG COLLECTIONS SECONDS</c>.
/// Exit code 0 when every result matched; 3 after the first wrong result, 4 after the first exception (each printed
/// as <c>wrong NAME</c> / <c>error NAME: message</c>; the run stops there).</para>
/// </summary>
internal static class RaceScenario
{
    private sealed record Operation(string Name, Func<ulong> Run);

    /// <summary>Runs <paramref name="only"/> (names; null = all) on <paramref name="threads"/> threads for
    /// <paramref name="seconds"/>, and on until every operation has run <paramref name="minRuns"/> times (on a slow or
    /// busy machine the forced collections can starve the workers of calls within the time).</summary>
    public static int Run(double seconds, int threads, IReadOnlyCollection<string>? only = null, int minRuns = 0)
    {
        set_num_threads(1); // one libtorch thread per caller: the race, not intra-op parallelism, is under test
        var dir = Directory.CreateTempSubdirectory("ddpm-race-").FullName;
        try
        {
            var operations = new List<Operation>();
            if (only is null || only.Any(name => name != Arithmetic.Name)) operations.AddRange(Fixture.Create(dir));
            operations.Add(Arithmetic);
            operations.RemoveAll(op => only is not null && !only.Contains(op.Name));
            if (only is not null && operations.Count != only.Count)
                throw new ArgumentException($"unknown operation in {string.Join(',', only)}");
            var expected = operations.ToDictionary(op => op.Name, op => op.Run()); // alone, before any other thread
            foreach (var op in operations)
            {
                var clock = Stopwatch.StartNew();
                if (op.Run() != expected[op.Name]) throw new InvalidOperationException($"{op.Name} is not reproducible run alone");
                Console.WriteLine($"alone {op.Name} {clock.Elapsed.TotalSeconds:F3}");
            }
            return Race(operations, expected, seconds, threads, minRuns);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static int Race(IReadOnlyList<Operation> operations, Dictionary<string, ulong> expected, double seconds, int threads,
        int minRuns)
    {
        var runs = new long[operations.Count];
        var wrong = new long[operations.Count];
        string? failure = null;
        int exitCode = 0;
        var stop = new CancellationTokenSource();
        int collectionsBefore = GC.CollectionCount(0);
        var clock = Stopwatch.StartNew();
        bool Done() => clock.Elapsed.TotalSeconds >= seconds &&
            Enumerable.Range(0, runs.Length).All(k => Volatile.Read(ref runs[k]) >= minRuns);
        void Fail(string line, int code)
        {
            lock (runs)
            {
                if (failure is not null) return;
                failure = line;
                exitCode = code;
            }
            Console.WriteLine(line);
            Console.Out.Flush();
            stop.Cancel();
        }

        var workers = Enumerable.Range(0, threads).Select(w => new Thread(() =>
        {
            // Each thread starts at another operation, so different entry points overlap.
            for (int i = w; !stop.IsCancellationRequested; i++)
            {
                if (Done())
                {
                    stop.Cancel();
                    break;
                }
                int k = i % operations.Count;
                var op = operations[k];
                try
                {
                    ulong result = op.Run();
                    Interlocked.Increment(ref runs[k]);
                    if (result != expected[op.Name])
                    {
                        Interlocked.Increment(ref wrong[k]);
                        Fail($"wrong {op.Name}: {result:x16}, alone {expected[op.Name]:x16}", 3);
                    }
                }
                catch (Exception e)
                {
                    Fail($"error {op.Name}: {e.GetType().Name}: {e.Message.Split('\n')[0]}", 4);
                }
            }
        }) { Name = $"race worker {w}" }).ToList();
        var collector = new Thread(() =>
        {
            // Collections at any moment of the workers' native calls; the allocations make some of their own.
            object[] keep = new object[64];
            // Young collections, back to back: each finds the few wrappers that died since the last one, so the
            // finalizer thread frees them soon after (full collections, tried first, reproduced the race less often).
            while (!stop.IsCancellationRequested)
            {
                for (int j = 0; j < 256; j++) keep[j % keep.Length] = new byte[1024];
                GC.Collect(0, GCCollectionMode.Forced, blocking: true);
            }
            GC.KeepAlive(keep);
        }) { Name = "race collector" };
        foreach (var t in workers) t.Start();
        collector.Start();
        foreach (var t in workers) t.Join();
        collector.Join();
        for (int k = 0; k < operations.Count; k++) Console.WriteLine($"op {operations[k].Name} {runs[k]} {wrong[k]}");
        Console.WriteLine($"total {runs.Sum()} {wrong.Sum()} {GC.CollectionCount(0) - collectionsBefore} {clock.Elapsed.TotalSeconds:F1}");
        return exitCode;
    }

    // A user's own thread doing tensor arithmetic beside the library (every number a Scalar, every + and −
    // an implicit alpha = 1): the patch protects any caller, not only the library's code.
    private static readonly Operation Arithmetic = new("arithmetic", () =>
    {
        using var a = ones(64);
        using var b = full(64, 2.0);
        double sum = 0;
        for (int i = 0; i < 2000; i++)
        {
            using var scope = NewDisposeScope();
            sum += ((a + b * 0.5 - 1.5) * 2.0).sum().item<float>(); // 64 every time
        }
        return Hash(0, sum.ToString("R"));
    });

    /// <summary>Hash of tensors' contents (any dtype, any device), in order.</summary>
    private static ulong Hash(params Tensor[] tensors)
    {
        var hash = new XxHash64();
        foreach (var t in tensors)
        {
            using var c = t.detach().cpu().contiguous();
            hash.Append(c.bytes);
            hash.Append(MemoryMarshal.AsBytes(c.shape.AsSpan()));
        }
        return hash.GetCurrentHashAsUInt64();
    }

    private static ulong Hash(ulong first, string text) => XxHash64.HashToUInt64(System.Text.Encoding.UTF8.GetBytes(text), unchecked((long)first));

    private static ulong HashParameters(nn.Module module) => Hash(module.parameters().ToArray());

    /// <summary>The files every operation reads (made once, alone) and the operations.</summary>
    private static class Fixture
    {
        public static IReadOnlyList<Operation> Create(string dir)
        {
            var cpu = new Device("cpu");
            // Tiny class-conditional models, T = 10: 8×8 images (small native calls, many of them per second) and,
            // for the evaluation (it measures MNIST-like images), 28×28.
            var config = new DdpmConfig
            {
                Dataset = new DatasetOptions { Name = "synthetic", RandomFlip = true },
                Diffusion = new DiffusionOptions { NumTimesteps = 10, BetaEnd = 0.2 },
                Model = new UNetOptions
                {
                    ImChannels = 1, ImSize = 8, DownChannels = [8, 16, 16, 16], MidChannels = [16, 16, 16], DownSample = [true, true, false],
                    TimeEmbDim = 16, NumDownLayers = 1, NumMidLayers = 1, NumUpLayers = 1, NumHeads = 1, NumClasses = 10,
                },
                Train = new TrainOptions { BatchSize = 8, NumEpochs = 1_000, Lr = 1e-3, EmaDecay = 0.9, LabelDropout = 0.2, Seed = 3 },
            }.Validate();
            var config28 = (config with { Model = config.Model with { ImSize = 28 } }).Validate();
            string checkpoint = Path.Combine(dir, "checkpoint.ckpt"), checkpoint28 = Path.Combine(dir, "checkpoint28.ckpt");
            foreach (var (c, path) in new[] { (config, checkpoint), (config28, checkpoint28) })
            {
                using var trainer = Trainer.Create(c, cpu);
                using var first = SyntheticImages.Create(16, 1, c.Model.ImSize, seed: 4);
                trainer.TrainEpoch(first); // an EMA that differs from the weights
                trainer.Save(path);
            }

            // The dataset files: IDX images and labels.
            string idxImages = Path.Combine(dir, "images.idx"), idxLabels = Path.Combine(dir, "labels.idx");
            using (var bars = SyntheticImages.Create(24, 1, 8, seed: 5)) WriteIdx(bars, idxImages, idxLabels);
            var datasetOptions = new DatasetOptions { Name = "idx", Images = idxImages, Labels = idxLabels };

            // The classifier: initial weights in one store, the evaluation's classifier (one epoch on bars) in another.
            var initial = new ClassifierStore(Path.Combine(dir, "classifier-initial"));
            var trained = new ClassifierStore(Path.Combine(dir, "classifier"));
            var classifierOptions = new ClassifierTrainingOptions { Epochs = 1, BatchSize = 16, MaxTrainImages = 48, Seed = 6 };
            QualityAnchors anchors;
            using (var train = SyntheticImages.Create(200, 1, 28, seed: 1))
            using (var test = SyntheticImages.Create(120, 1, 28, seed: 2))
            {
                initial.Train(train, test, classifierOptions with { MaxTrainImages = 1 }).Model.Dispose();
                var (classifier, info) = trained.Train(train, test, classifierOptions);
                using (classifier) anchors = QualityAnchors.Compute(classifier, info, train, test);
            }

            var sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 3 };
            int[] labels = [3, 1, 4, 1, 5];
            return
            [
                new("generate", () =>
                {
                    using var generator = ImageGenerator.Load(checkpoint);
                    using var result = generator.Generate(new GenerationRequest
                    {
                        Count = labels.Length, Seed = 7, Labels = labels, Guidance = 2.0, MaxBatchSize = 3, Sampler = sampler,
                    });
                    return Hash(result.Images);
                }),
                new("train", () =>
                {
                    using var trainer = Trainer.Resume(checkpoint, cpu);
                    using var data = SyntheticImages.Create(16, 1, 8, seed: 8);
                    var report = trainer.TrainEpoch(data)!;
                    return Hash(HashParameters(trainer.Model), report.MeanLoss.ToString("R"));
                }),
                new("save-load", () =>
                {
                    using var trainer = Trainer.Resume(checkpoint, cpu);
                    var path = Path.Combine(dir, $"saved-{Environment.CurrentManagedThreadId}.ckpt");
                    trainer.Save(path);
                    var (model, _, manifest) = Checkpoint.LoadModel(path);
                    using (model) return Hash(HashParameters(model), manifest.Step.ToString());
                }),
                new("export-import", () =>
                {
                    var (model, loadedConfig, _) = Checkpoint.LoadModel(checkpoint);
                    using (model)
                    {
                        var path = Path.Combine(dir, $"weights-{Environment.CurrentManagedThreadId}.safetensors");
                        ModelFile.Export(model, path);
                        using var loaded = ModelFile.Load(path, loadedConfig);
                        return HashParameters(loaded.Model);
                    }
                }),
                new("bound", () =>
                {
                    using var generator = ImageGenerator.Load(checkpoint);
                    using var data = SyntheticImages.Create(4, 1, 8, seed: 9);
                    using var idx = arange(4, dtype: int64);
                    using var x0 = data.Batch(idx);
                    var bound = new VariationalBound(generator.Diffusion);
                    var exact = bound.Exact(generator.EpsPredictor, [x0], seed: 10);
                    var estimate = bound.Estimate(generator.EpsPredictor, [x0], k: 3, seed: 11);
                    return Hash(0, JsonSerializer.Serialize(exact) + JsonSerializer.Serialize(estimate));
                }),
                new("classifier", () =>
                {
                    var (model, _) = initial.Load();
                    using (model)
                    using (var train = SyntheticImages.Create(48, 1, 28, seed: 12))
                    {
                        ClassifierTraining.Train(model, train, classifierOptions);
                        double accuracy = ClassifierTraining.Accuracy(model, train, batchSize: 20);
                        using var outputs = model.Embed(train.Images, batchSize: 20);
                        return Hash(Hash(outputs.Features, outputs.Probabilities), accuracy.ToString("R"));
                    }
                }),
                new("evaluate", () =>
                {
                    var (classifier, info) = trained.Load();
                    var train = SyntheticImages.Create(200, 1, 28, seed: 1);
                    var test = SyntheticImages.Create(120, 1, 28, seed: 2);
                    using var reference = new EvaluationReference(classifier, info, trained.WeightsPath, train, test, anchors);
                    using var evaluator = Evaluator.Open(new EvaluationOptions
                    {
                        Checkpoint = checkpoint28, Num = 85, BatchSize = 85, Seed = 13, Guidance = 1.0, Sampler = sampler,
                        Nll = NllMethod.Estimate, NllImages = 4, NllTimesteps = 2,
                    });
                    using var result = evaluator.Run(reference);
                    var r = result.Report;
                    return Hash(Hash(result.Images), JsonSerializer.Serialize(new object?[] { r.Quality, r.RealAtSameN, r.Nll, r.ClassAgreement }));
                }),
                new("dataset", () =>
                {
                    using var data = DatasetFactory.Load(datasetOptions, config.Model);
                    return Hash(data.Images, data.Labels!);
                }),
            ];
        }

        private static void WriteIdx(ImageDataset data, string imagesPath, string labelsPath)
        {
            // IDX (LeCun): magic 0x0803 (unsigned bytes, 3 dimensions) or 0x0801 (1 dimension), big-endian sizes, data.
            static byte[] BigEndian(int value) => [(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value];
            int n = (int)data.Count;
            using (var images = File.Create(imagesPath))
            {
                foreach (int v in new[] { 0x0803, n, data.Height, data.Width }) images.Write(BigEndian(v));
                images.Write(data.Images.bytes);
            }
            using var labels = File.Create(labelsPath);
            foreach (int v in new[] { 0x0801, n }) labels.Write(BigEndian(v));
            using var bytes = data.Labels!.to(ScalarType.Byte);
            labels.Write(bytes.bytes);
        }
    }
}
