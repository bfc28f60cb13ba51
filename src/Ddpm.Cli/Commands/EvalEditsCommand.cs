using System.CommandLine;
using Ddpm.Evaluation;
using Ddpm.IO;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm eval-edits</c>: <see cref="EditingBenchmark"/>'s table for an MNIST checkpoint (inpainting half-masked test
/// digits, plain replacement against RePaint; SDEdit from salt-and-pepper and blurred ones), printed as Markdown.
/// </summary>
internal static class EvalEditsCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "a ddpm checkpoint of a 1-channel 28×28 model",
            Required = true,
        };
        var dataDir = new Option<string>("--data-dir")
        {
            Description = "MNIST folder holding the cached classifier (as ddpm eval)",
            DefaultValueFactory = _ => "data/mnist",
        };
        var num = new Option<int>("--num")
        {
            Description = "MNIST test digits edited (the first N)",
            DefaultValueFactory = _ => 500,
        };
        var seed = new Option<long>("--seed")
        {
            Description = "seed of the edits' noise",
            DefaultValueFactory = _ => 0,
        };
        var steps = new Option<int>("--steps")
        {
            Description = "steps of the ancestral (ddpm) sampler every edit uses",
            DefaultValueFactory = _ => 25,
        };
        var resample = new Option<int>("--resample")
        {
            Description = "RePaint's resamplings r",
            DefaultValueFactory = _ => 4,
        };
        var jump = new Option<int>("--jump") { Description = "RePaint's jump length j", DefaultValueFactory = _ => 3 };
        var noControl = new Option<bool>("--no-control")
        {
            Description = "leave out the control: plain replacement with as many steps as RePaint makes model calls",
        };
        var output = new Option<string?>("--out") { Description = "also write the table to this Markdown file" };
        var device = CommonOptions.DeviceOption();
        var cmd = new Command("eval-edits", "Measure inpainting (replacement, RePaint) and SDEdit on MNIST test digits")
        {
            checkpoint, dataDir, num, seed, steps, resample, jump, noControl, output, device,
        };
        cmd.SetAction(p =>
        {
            var options = new EditingBenchmarkOptions
            {
                Checkpoint = p.GetValue(checkpoint)!,
                DataDir = p.GetValue(dataDir)!,
                Num = p.GetValue(num),
                Seed = p.GetValue(seed),
                Sampler = new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = p.GetValue(steps) },
                MatchedControl = !p.GetValue(noControl),
                Resamplings = p.GetValue(resample),
                JumpLength = p.GetValue(jump),
                Device = CommonOptions.ResolveDevice(p.GetValue(device)),
            };
            IReadOnlyList<EditingRow> rows;
            try { rows = EditingBenchmark.Run(options, Console.Error.WriteLine); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var table = EditingBenchmark.ToMarkdown(rows);
            if (p.GetValue(output) is { } path)
                AtomicFile.WriteAllBytes(path, System.Text.Encoding.UTF8.GetBytes(table));
            Console.Write(table);
            return CliApp.Ok;
        });
        return cmd;
    }
}
