// Prints EditingBenchmark's table (docs/editing.md) for an MNIST checkpoint: inpainting half-masked test digits by
// plain replacement and RePaint, SDEdit from salt-and-pepper and blurred ones; label agreement, FD and time per image.
// Usage: dotnet benchmarks/EditingBench/bin/Release/net10.0/EditingBench.dll CHECKPOINT [DATA_DIR] [NUM] [OUT.md]
// (DATA_DIR: MNIST and the cached classifier, default data/mnist; NUM: test digits, default 500)
using Ddpm.Evaluation;
using Ddpm.Runtime;
using Ddpm.Sampling;
using static TorchSharp.torch;

if (args.Length is < 1 or > 4)
{
    Console.Error.WriteLine("usage: EditingBench CHECKPOINT [DATA_DIR] [NUM] [OUT.md]");
    return 2;
}
DevicePolicy.Apply(CPU);
var options = new EditingBenchmarkOptions
{
    Checkpoint = args[0],
    DataDir = args.Length > 1 ? args[1] : "data/mnist",
    Num = args.Length > 2 ? int.Parse(args[2], System.Globalization.CultureInfo.InvariantCulture) : 500,
    Seed = 0,
    Sampler = new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = 25 },
    MatchedControl = true,
    Resamplings = 4,
    JumpLength = 3,
    Device = CPU,
};
var table = EditingBenchmark.ToMarkdown(EditingBenchmark.Run(options, Console.Error.WriteLine));
if (args.Length > 3) File.WriteAllText(args[3], table);
Console.Write(table);
return 0;
