using System.CommandLine;
using Ddpm.Imaging;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm interpolate</c>: the frames between two seeds' samples (every noise a slerp of theirs), as one strip and an
/// animated PNG that plays the path there and back. A deterministic sampler (the default, DDIM η = 0) gives the
/// smoothest path.
/// </summary>
internal static class InterpolateCommand
{
    public static Command Create()
    {
        var options = new EditOptions(SamplerKind.Ddim, "interpolation");
        var seeds = new Option<string>("--seeds")
        {
            Description = "the two ends' seeds, A,B (image 0 of each unless --indices)",
            Required = true,
        };
        var indices = new Option<string?>("--indices")
        {
            Description = "image indices of the ends in their seeds' sequences, I,J (default 0,0)",
        };
        var classes = new Option<string?>("--classes")
        {
            Description = "classes of the ends for a class-conditional model, a,b (their ε mixed along the path)",
        };
        var frames = new Option<int>("--frames")
        {
            Description = "frames of the path, ends included (>= 2)",
            DefaultValueFactory = _ => 8,
        };
        var rows = new Option<int?>("--grid-rows") { Description = "frames per grid row (default: all in one row)" };
        var cmd = new Command("interpolate", "Frames between two seeds' samples: a slerp of their noise (DDIM default)")
        {
            seeds, indices, classes, frames, rows,
        };
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var (a, b) = Pair("--seeds", p.GetValue(seeds)!, long.Parse);
            var (i, j) = p.GetValue(indices) is { } text ? Pair("--indices", text, long.Parse) : (0, 0);
            var (from, to) = p.GetValue(classes) is { } c ? Pair<int?>("--classes", c, s => int.Parse(s))
                : (null, null);
            using var generator = options.Load(p);
            int n = p.GetValue(frames);
            var request = new GenerationRequest
            {
                Count = Math.Max(1, n),
                Seed = a,
                Sampler = options.Sampler(p),
                Guidance = options.Guidance(p),
                MaxBatchSize = options.BatchSize(p),
                Interpolation = new Interpolation
                {
                    Frames = n, FromIndex = i, ToSeed = b, ToIndex = j, FromClass = from, ToClass = to,
                },
            };
            int perRow = p.GetValue(rows) ?? Math.Max(1, n);
            return options.Run(p, generator, request, "interpolation.png", perRow, animation: null,
                result => AnimatedPng.Assemble(PingPong(result.Images), frameMilliseconds: 150));
        });
        return cmd;
    }

    /// <summary>"X,Y" as two values; anything else is a usage error naming the option.</summary>
    private static (T, T) Pair<T>(string option, string text, Func<string, T> parse)
    {
        var parts = text.Split(',');
        try
        {
            if (parts.Length == 2) return (parse(parts[0].Trim()), parse(parts[1].Trim()));
        }
        catch (Exception e) when (e is FormatException or OverflowException)
        {
            // reported below, as any other spelling
        }
        throw new UsageException($"{option}: expected two integers separated by a comma, got '{text}'");
    }

    /// <summary>Frames 0 … F − 1 … 1 as PNGs, so the animation loops without a jump.</summary>
    private static List<byte[]> PingPong(Tensor images)
    {
        int n = (int)images.shape[0];
        var order = Enumerable.Range(0, n).Concat(Enumerable.Range(1, Math.Max(0, n - 2)).Reverse());
        return order.Select(k => ImageGrid.ToPng(images.narrow(0, k, 1), 1)).ToList();
    }
}
