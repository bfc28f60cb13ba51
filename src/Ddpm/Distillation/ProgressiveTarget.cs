using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Distillation;

/// <summary>
/// The regression target of one round of progressive distillation (Salimans &amp; Ho 2022, Algorithm 2): the student's
/// one DDIM step from t to t'' must land where the teacher's two DDIM steps t → t' → t'' land. The teacher's grid has
/// 2N timesteps (noisiest first, then x̂_0 after the last); the student's is every other one, so student step i spans
/// teacher steps 2i and 2i + 1. Each image has its own step i, so every coefficient is a [B, 1, 1, 1] tensor. Notation
/// as the paper's: α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t); after the last step ᾱ = 1 (α = 1, σ = 0).
/// </summary>
public sealed class ProgressiveTarget
{
    private readonly double[] _alphaBarStart, _alphaBarMid, _alphaBarEnd;
    private readonly Dictionary<string, Coefficients> _tables = new();

    /// <summary>
    /// Per student step i: ᾱ at its start, middle and end, and its and the teacher's timesteps, on one device.
    /// </summary>
    private sealed record Coefficients(Tensor Start, Tensor Mid, Tensor End, Tensor Timesteps, Tensor TeacherTimesteps);

    /// <summary>The teacher's grid, 2N model timesteps, noisiest first.</summary>
    public IReadOnlyList<int> TeacherTimesteps { get; }
    /// <summary>The student's grid: the teacher's timesteps 0, 2, 4, …, 2N − 2.</summary>
    public IReadOnlyList<int> StudentTimesteps { get; }
    /// <summary>Whether the teacher's DDIM steps clip x̂_0 to [−1, 1].</summary>
    public bool ClipX0 { get; }
    public int StudentSteps => StudentTimesteps.Count;

    public ProgressiveTarget(NoiseSchedule schedule, IReadOnlyList<int> teacherTimesteps, bool clipX0)
    {
        if (teacherTimesteps.Count < 2 || teacherTimesteps.Count % 2 != 0)
            throw new ArgumentException($"the teacher's grid needs an even number (>= 2) of timesteps, " +
                $"got {teacherTimesteps.Count}", nameof(teacherTimesteps));
        // The same checks as the sampler that will run the student (distinct, decreasing, inside 0..T−1).
        _ = new Sampling.DdimSampler(schedule, teacherTimesteps);
        TeacherTimesteps = teacherTimesteps.ToArray();
        StudentTimesteps = StepGrid.Halve(teacherTimesteps);
        ClipX0 = clipX0;
        int n = StudentTimesteps.Count;
        double AlphaBar(int j) => j < teacherTimesteps.Count ? schedule.AlphasCumprod[teacherTimesteps[j]] : 1.0;
        _alphaBarStart = Enumerable.Range(0, n).Select(i => AlphaBar(2 * i)).ToArray();
        _alphaBarMid = Enumerable.Range(0, n).Select(i => AlphaBar(2 * i + 1)).ToArray();
        _alphaBarEnd = Enumerable.Range(0, n).Select(i => AlphaBar(2 * i + 2)).ToArray();
    }

    private Coefficients Tables(Device device)
    {
        var key = device.ToString();
        lock (_tables)
        {
            if (_tables.TryGetValue(key, out var c)) return c;
            static Tensor F(double[] v, Device d) =>
                tensor(v.Select(x => (float)x).ToArray(), dtype: float32, device: d).DetachFromDisposeScope();
            static Tensor L(IReadOnlyList<int> v, Device d) =>
                tensor(v.Select(x => (long)x).ToArray(), dtype: int64, device: d).DetachFromDisposeScope();
            c = new Coefficients(F(_alphaBarStart, device), F(_alphaBarMid, device), F(_alphaBarEnd, device),
                L(StudentTimesteps, device), L(TeacherTimesteps, device));
            _tables[key] = c;
            return c;
        }
    }

    private static Tensor PerImage(Tensor table, Tensor index) => table.index_select(0, index).reshape(-1, 1, 1, 1);

    /// <summary>
    /// The student's model timestep t of each image's step <paramref name="index"/> (int64 [B] in 0..N−1).
    /// </summary>
    public Tensor Timesteps(Tensor index) => Tables(index.device).Timesteps.index_select(0, index);

    /// <summary>
    /// One DDIM step (Song et al. 2021, eq. 12 with σ = 0) per image from ᾱ to ᾱ_next given ε: x̂_0 = (x − √(1 − ᾱ)
    /// ε)/√ᾱ (clipped, and ε re-derived, when <see cref="ClipX0"/>), x_next = √ᾱ_next x̂_0 + √(1 − ᾱ_next) ε.
    /// </summary>
    public Tensor DdimStep(Tensor x, Tensor eps, Tensor alphaBar, Tensor alphaBarNext)
    {
        var x0 = (x - (1 - alphaBar).sqrt() * eps) / alphaBar.sqrt();
        if (ClipX0)
        {
            x0 = x0.clamp(-1.0, 1.0);
            eps = (x - alphaBar.sqrt() * x0) / (1 - alphaBar).sqrt();
        }
        return alphaBarNext.sqrt() * x0 + (1 - alphaBarNext).sqrt() * eps;
    }

    /// <summary>
    /// The teacher's two DDIM steps from z_t (t = the student's timestep of step i) to z_t'' (Algorithm 2, lines 7–8).
    /// <paramref name="teacher"/> gives ε (guided where the teacher is), taking the per-image timesteps.
    /// </summary>
    public Tensor TeacherTwoSteps(NoisePredictor teacher, Tensor z, Tensor index)
    {
        var c = Tables(z.device);
        var t = c.TeacherTimesteps.index_select(0, index * 2);
        var tMid = c.TeacherTimesteps.index_select(0, index * 2 + 1);
        var (a, aMid, aEnd) = (PerImage(c.Start, index), PerImage(c.Mid, index), PerImage(c.End, index));
        var zMid = DdimStep(z, teacher(z, t), a, aMid);
        return DdimStep(zMid, teacher(zMid, tMid), aMid, aEnd);
    }

    /// <summary>
    /// x̃ = (z_t'' − (σ_t''/σ_t) z_t) / (α_t'' − (σ_t''/σ_t) α_t) (Algorithm 2, line 9): the x̂_0 with which one DDIM
    /// step from z_t lands exactly on z_t''. At the last step (σ_t'' = 0) it is z_t'' itself.
    /// </summary>
    public Tensor X0Target(Tensor z, Tensor zEnd, Tensor index)
    {
        var c = Tables(z.device);
        var (a, aEnd) = (PerImage(c.Start, index), PerImage(c.End, index));
        var ratio = (1 - aEnd).sqrt() / (1 - a).sqrt();
        return (zEnd - ratio * z) / (aEnd.sqrt() - ratio * a.sqrt());
    }

    /// <summary>z_t = α_t x_0 + σ_t ε at the student's timestep of each image's step (DDPM eq. 4).</summary>
    public Tensor Noised(Tensor x0, Tensor noise, Tensor index)
    {
        var a = PerImage(Tables(x0.device).Start, index);
        return a.sqrt() * x0 + (1 - a).sqrt() * noise;
    }
}
