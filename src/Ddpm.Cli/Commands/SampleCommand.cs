using System.CommandLine;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm sample</c>: from a checkpoint to a PNG grid and an animated reverse process, by DPM-Solver++(2M) SDE in 20 steps
/// unless <c>--sampler</c> says otherwise (<c>--sampler ddpm</c> is the seed's Algorithm 2). Under <c>mpirun -n R</c>
/// each rank makes its range of image indices and rank 0 alone writes and reports (<see cref="Runs.SampleRun"/>).
/// </summary>
internal static class SampleCommand
{
    public static Command Create()
    {
        var options = new GenerationOptionSet();
        var cmd = new Command("sample", "Generate images from a checkpoint (default DPM-Solver++(2M) SDE in 20 steps; Algorithm 2, DDIM, respaced DDPM, DPM-Solver++, UniPC; guidance)");
        options.AddTo(cmd);
        cmd.SetAction(p =>
        {
            using var generator = options.Load(p);
            return options.Run(p, options.Plan(p, generator, options.Request(p, generator)), "sampled");
        });
        return cmd;
    }
}
