using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm sample</c>: from a checkpoint to a PNG grid and an animated reverse process, by DPM-Solver++(2M) SDE in 20 steps
/// unless <c>--sampler</c> says otherwise (<c>--sampler ddpm</c> is the seed's Algorithm 2); with <c>--init</c>,
/// image-to-image (SDEdit). Under <c>mpirun -n R</c> each rank makes its range of image indices and rank 0 alone writes
/// and reports (<see cref="Runs.SampleRun"/>).
/// </summary>
internal static class SampleCommand
{
    public static Command Create()
    {
        var options = new GenerationOptionSet();
        var init = new Option<string?>("--init") { Description = "image-to-image (SDEdit): start from this image, or a folder of them (PNG/JPEG at the model's size; image i from input i mod M)" };
        var strength = new Option<double?>("--strength") { Description = "with --init: the share s in (0, 1] of the chain run again from the noised input (default 0.5; 1 = from noise)" };
        var cmd = new Command("sample", "Generate images from a checkpoint (default DPM-Solver++(2M) SDE in 20 steps; Algorithm 2, DDIM, respaced DDPM, DPM-Solver++, UniPC; guidance)")
        {
            init, strength,
        };
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            if (p.GetValue(init) is null && p.GetValue(strength) is not null) throw new UsageException("--strength applies to image-to-image: give --init IMG");
            using var generator = options.Load(p);
            var request = options.Request(p, generator);
            using var images = p.GetValue(init) is { } path ? GenerationOptionSet.Images("--init", path, generator) : null;
            if (images is not null) request = request with { ImageToImage = new ImageToImage { Images = images, Strength = p.GetValue(strength) ?? 0.5 } };
            return options.Run(p, options.Plan(p, generator, request), images is null ? "sampled" : "cleaned up");
        });
        return cmd;
    }
}
