// Trains a tiny DDPM for a few steps on synthetic images and samples a 2×2 grid, using only the Ddpm package.
// Usage: dotnet run --project examples/Quickstart -- [OUTPUT_DIR]
using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.Sampling;
using Ddpm.Training;
using static TorchSharp.torch;

var outDir = args.Length > 0 ? args[0] : "quickstart-out";
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();
// A model this small runs fastest on one thread (and does not fight other processes for cores).
set_num_threads(1);

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

// Algorithm 1, a few steps.
using var data = DatasetFactory.Load(config.Dataset, config.Model);
using var trainer = Trainer.Create(config, CPU);
var report = trainer.TrainEpoch(data, step => Console.WriteLine($"step {step.Step}: loss {step.Loss:F4}"))!;
Console.WriteLine($"trained {report.Steps} steps, mean loss {report.MeanLoss:F4} ({clock.Elapsed.TotalSeconds:F1} s)");
var checkpoint = Path.Combine(outDir, "model.ckpt");
trainer.Save(checkpoint);

// Reload from the checkpoint (it carries its config; EMA weights are used when it has them) and run Algorithm 2
// through the generation pipeline (it turns x_0- or v-predictions into ε, batches, seeds every image) for a 2×2 grid.
using var generator = ImageGenerator.Load(checkpoint);
using var result = generator.Generate(new GenerationRequest { Count = 4, Seed = 0 });
var grid = Path.Combine(outDir, "samples.png");
Console.WriteLine($"sampled {result.Count} images in {result.Timesteps.Count} steps ({clock.Elapsed.TotalSeconds:F1} s)");
ImageGrid.SavePng(result.Images, perRow: 2, grid);

// The same weights for PyTorch: Unet(config).load_state_dict(torch.load(path)).
var pth = Path.Combine(outDir, "model.pth");
ModelFile.Export(generator.Model, pth);

Console.WriteLine($"wrote {grid} ({new FileInfo(grid).Length} bytes), {checkpoint} and {pth} in {clock.Elapsed.TotalSeconds:F1} s");
