using Ddpm.Diffusion;
using Ddpm.Sampling;

namespace Ddpm.Distillation;

/// <summary>
/// The step grids of progressive distillation: the teacher's first grid, and each round's half of it.
/// </summary>
public static class StepGrid
{
    /// <summary>
    /// The teacher's DDIM grid of <paramref name="steps"/> model timesteps, noisiest first, as
    /// <see cref="DdimSampler"/> visits it.
    /// </summary>
    public static int[] Teacher(NoiseSchedule schedule, int steps, SpacingKind spacing) =>
        TimestepSpacing.Ascending(schedule, steps, spacing).Reverse().ToArray();

    /// <summary>
    /// Every other timestep (0, 2, 4, …) of an even-length grid: the student's grid when the teacher's is
    /// <paramref name="grid"/>.
    /// </summary>
    public static int[] Halve(IReadOnlyList<int> grid)
    {
        if (grid.Count < 2 || grid.Count % 2 != 0)
            throw new ArgumentException($"only a grid of an even number of steps halves, got {grid.Count}",
                nameof(grid));
        return Enumerable.Range(0, grid.Count / 2).Select(i => grid[2 * i]).ToArray();
    }

    /// <summary>
    /// The grid of round <paramref name="round"/>'s teacher (1-based): the first grid halved round − 1 times.
    /// </summary>
    public static int[] TeacherOfRound(IReadOnlyList<int> first, int round)
    {
        var grid = first.ToArray();
        for (int r = 1; r < round; r++) grid = Halve(grid);
        return grid;
    }
}
