// Generates digits from an exported model on ONNX Runtime alone (no TorchSharp, no libtorch), using only the Ddpm.Onnx
// package. Export a model first: ddpm export --checkpoint CHECKPOINT --to model.onnx
// Usage: dotnet run --project examples/OnnxQuickstart -- MODEL.onnx [OUTPUT_DIR]
using System.Diagnostics;
using Ddpm.Onnx;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: OnnxQuickstart MODEL.onnx [OUTPUT_DIR]  (make MODEL.onnx with: ddpm export --checkpoint CKPT --to MODEL.onnx)");
    return 2;
}
var outDir = args.Length > 1 ? args[1] : "onnx-quickstart-out";
Directory.CreateDirectory(outDir);
var clock = Stopwatch.StartNew();

using var generator = OnnxImageGenerator.Load(args[0]);
var info = generator.Info;
Console.WriteLine($"{args[0]}: {info.Channels}×{info.Height}×{info.Width} images, {info.Prediction} prediction, T = {info.Betas.Count}, " +
    $"{(info.IsConditional ? $"{info.NumClasses} classes" : "unconditional")}");

// 16 images with the default sampler, DPM-Solver++(2M) SDE in 20 steps; a class-conditional model gets four of each of
// its first four classes, with classifier-free guidance.
var request = new GenerationRequest { Count = 16, Seed = 0 };
if (info.IsConditional)
    request = request with { Labels = Enumerable.Range(0, 16).Select(i => i / 4 % info.NumClasses).ToArray(), Guidance = 1 };
var result = generator.Generate(request, step =>
{
    if (step.Index % 5 == 4) Console.WriteLine($"step {step.Index + 1}/{step.Steps} (t = {step.Timestep})");
});
var grid = Path.Combine(outDir, "samples.png");
File.WriteAllBytes(grid, result.ToPng(perRow: 4));
Console.WriteLine($"generated {result.Count} images in {result.Seconds:F2} s; wrote {grid} ({clock.Elapsed.TotalSeconds:F1} s in all)");
return 0;
