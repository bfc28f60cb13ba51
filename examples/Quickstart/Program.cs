// The library in a few lines, using only the Ddpm package: sample the model that ships with the repository, then train
// a tiny model on synthetic images through the run layer and sample it too. Usage: dotnet run --project
// examples/Quickstart -- [OUTPUT_DIR] [MODEL] (MODEL: models/mnist-quick.ckpt by default)
using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.Runs;
using Ddpm.Runtime;
using Ddpm.Sampling;
using static TorchSharp.torch;

var outDir = args.Length > 0 ? args[0] : "quickstart-out";
var modelPath = args.Length > 1 ? args[1] : "models/mnist-quick.ckpt";
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();
DevicePolicy.Apply(CPU); // the host's one policy call, before any model is built
set_num_threads(1);      // models this small run fastest on one thread

// 1. Ten digits, 0 to 9, from the shipped model: 20 steps of DPM-Solver++(2M) SDE with classifier-free guidance.
if (File.Exists(modelPath))
{
    using var shipped = ImageGenerator.Load(modelPath);
    var request = new GenerationRequest
    {
        Count = 10, Seed = 0, Labels = GenerationRequest.CyclingClasses(10, 10), Guidance = 3,
        Sampler = new SamplerOptions { Kind = SamplerOptions.RecommendedKind, ClipX0 = true },
    };
    using var digits = shipped.Generate(request);
    ImageGrid.SavePng(digits.Images, perRow: 10, Path.Combine(outDir, "digits.png"));
    Console.WriteLine($"sampled 10 digits from {modelPath} in {digits.Timings.TotalSeconds:F1} s");
}

// 2. A tiny model, trained for a few steps on synthetic images (the run folder holds its checkpoint, logs and config).
var config = new DdpmConfig
{
    Dataset = new DatasetOptions { Name = "synthetic" },
    Diffusion = new DiffusionOptions { NumTimesteps = 20 },
    Model = new UNetOptions
    {
        ImChannels = 1, ImSize = 16, DownChannels = [8, 16, 16, 16], MidChannels = [16, 16, 16],
        TimeEmbDim = 16, NumDownLayers = 1, NumMidLayers = 1, NumUpLayers = 1, NumHeads = 4,
    },
    Train = new TrainOptions { BatchSize = 8, NumEpochs = 1, MaxSteps = 5, Lr = 1e-3 },
}.Validate();
TrainingRunResult trained;
using (var run = TrainingRun.Open(new TrainingRunRequest { Folder = Path.Combine(outDir, "run"), Config = config, Overwrite = true }, CPU))
    trained = run.Run();
Console.WriteLine($"trained {trained.Step} steps into {trained.Checkpoint}");

// Reload it (the checkpoint carries its config; EMA weights are used when it has them) and run Algorithm 2 for a 2×2
// grid.
using var generator = ImageGenerator.Load(trained.Checkpoint);
using var result = generator.Generate(new GenerationRequest { Count = 4, Seed = 0, Sampler = new SamplerOptions() });
var grid = Path.Combine(outDir, "samples.png");
ImageGrid.SavePng(result.Images, perRow: 2, grid);

// The same weights for PyTorch: Unet(config).load_state_dict(torch.load(path)).
ModelFile.Export(generator.Model, Path.Combine(outDir, "model.pth"));
Console.WriteLine($"wrote {grid} and model.pth in {clock.Elapsed.TotalSeconds:F1} s");
