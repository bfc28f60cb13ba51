using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm interpolate</c>: <c>--num</c> frames from one seed's sample to another's, a spherical interpolation of their
/// noise, as a one-row grid and an animated path (<see cref="Runs.SampleFolder.PathFile"/>). A deterministic sampler
/// (the default, DDIM η = 0) gives the smoothest path.
/// </summary>
internal static class InterpolateCommand
{
    public static Command Create()
    {
        var options = new GenerationOptionSet(SamplerKind.Ddim, "interpolation");
        var seeds = new Option<string>("--seeds") { Description = "the two ends' seeds, A,B (image 0 of each unless --indices)", Required = true };
        var indices = new Option<string?>("--indices") { Description = "image indices of the ends in their seeds' sequences, I,J (default 0,0)" };
        var classes = new Option<string?>("--classes") { Description = "classes of the ends for a class-conditional model, a,b (their ε mixed along the path)" };
        var cmd = new Command("interpolate", "Frames between two seeds' samples (--num of them, ends included): a slerp of their noise") { seeds, indices, classes };
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            var (a, b) = Pair("--seeds", p.GetValue(seeds)!, long.Parse);
            var (i, j) = p.GetValue(indices) is { } text ? Pair("--indices", text, long.Parse) : (0, 0);
            var (from, to) = p.GetValue(classes) is { } c ? Pair<int?>("--classes", c, s => int.Parse(s)) : (null, null);
            using var generator = options.Load(p);
            var request = options.Request(p, generator, defaultCount: 8) with { Seed = a, Labels = null };
            request = request with
            {
                Interpolation = new Interpolation { Frames = request.Count, FromIndex = i, ToSeed = b, ToIndex = j, FromClass = from, ToClass = to },
            };
            return options.Run(p, options.Plan(p, generator, request, defaultRows: request.Count), "interpolated");
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
        catch (Exception e) when (e is FormatException or OverflowException) { } // reported below, as any other spelling
        throw new UsageException($"{option}: expected two integers separated by a comma, got '{text}'");
    }
}
