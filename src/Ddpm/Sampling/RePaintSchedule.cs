namespace Ddpm.Sampling;

/// <summary>One move of an inpainting run: sampler step <see cref="Step"/>, then, when <see cref="JumpTo"/> is set, a
/// jump back up the grid to the state before step <see cref="JumpTo"/>.</summary>
public readonly record struct RePaintMove(int Step, int? JumpTo);

/// <summary>
/// RePaint's resampling schedule (Lugmayr et al. 2022, §4.2 and Fig. 9) over a sampler's grid of S steps. State i is x
/// before step i (state S: the finished image). Coming down to state i with S − 1 − i ∈ {0, j, 2j, …} and i ≥ j, the
/// run jumps back j states, r − 1 times per such state before going on, so every stretch of j steps is walked r times
/// in all. r = 1 is plain replacement: the steps 0 … S − 1 once each.
/// </summary>
public static class RePaintSchedule
{
    /// <summary>The moves for S <paramref name="steps"/>, jump length j ≥ 1 and r ≥ 1 resamplings.</summary>
    public static IReadOnlyList<RePaintMove> Moves(int steps, int jump, int resamplings)
    {
        if (steps < 1) throw new ArgumentOutOfRangeException(nameof(steps), $"steps must be >= 1, got {steps}");
        if (jump < 1) throw new ArgumentOutOfRangeException(nameof(jump), $"the jump length must be >= 1, got {jump}");
        if (resamplings < 1)
            throw new ArgumentOutOfRangeException(nameof(resamplings), $"resamplings must be >= 1, got {resamplings}");
        var left = new Dictionary<int, int>();
        if (resamplings > 1)
            for (int a = 0; a < steps - jump; a += jump) left[steps - 1 - a] = resamplings - 1;
        var moves = new List<RePaintMove>();
        int state = 0;
        while (state < steps)
        {
            int step = state++;
            if (left.TryGetValue(state, out int n) && n > 0)
            {
                left[state] = n - 1;
                state -= jump;
                moves.Add(new RePaintMove(step, state));
            }
            else
            {
                moves.Add(new RePaintMove(step, null));
            }
        }
        return moves;
    }

    /// <summary>Model calls of <see cref="Moves"/>: S + (r − 1)·j·⌈(S − j)/j⌉ (one per step walked).</summary>
    public static int ModelCalls(int steps, int jump, int resamplings) =>
        steps + (resamplings > 1 && steps > jump ? (resamplings - 1) * jump * ((steps - jump + jump - 1) / jump) : 0);
}
