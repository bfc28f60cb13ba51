using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Distillation;
using Ddpm.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distillation;

/// <summary>
/// Progressive distillation's target (Salimans &amp; Ho 2022, Algorithm 2) against the repository's DDIM sampler.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class ProgressiveTargetTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("distill-target");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void The_target_is_two_guided_teacher_DDIM_steps_and_one_student_step_from_x_tilde_reaches_it(bool clip)
    {
        var options = DistillationFixtures.Options(DistillationFixtures.Teacher(_dir)) with { ClipX0 = clip };
        using var run = ProgressiveDistillation.Start(options, DistillationFixtures.Cpu);
        var target = run.Target;
        var schedule = run.StudentDiffusion.Schedule;
        Assert.Equal(8, target.TeacherTimesteps.Count);
        Assert.Equal(target.TeacherTimesteps.Where((_, j) => j % 2 == 0), target.StudentTimesteps);

        using var scope = NewDisposeScope();
        using var g = new Generator(11, new Device("cpu"));
        // One image per student step (the last one ends at x̂_0), labels 0, 1 and the null label 2 (a dropped label).
        var index = tensor(new long[] { 0, 1, 2, 3 }, dtype: int64);
        var labels = tensor(new long[] { 0, 1, 2, 1 }, dtype: int64);
        var z = randn([4, 1, 8, 8], generator: g) * 1.2;
        var end = target.TeacherTwoSteps(run.TeacherFor(labels), z, index);
        var xTilde = target.X0Target(z, end, index);

        // Independently: the teacher as ImageGenerator guides it, stepped by DdimSampler over the teacher's grid.
        using var teacher = ImageGenerator.Load(run.Options.Teacher);
        var teacherSampler = new DdimSampler(schedule, target.TeacherTimesteps, clipX0: clip);
        var studentSampler = new DdimSampler(schedule, target.StudentTimesteps);
        for (int b = 0; b < 4; b++)
        {
            int i = (int)index[b].item<long>();
            var x = z.narrow(0, b, 1);
            var y = labels.narrow(0, b, 1);
            var eps = ClassifierFreeGuidance.Guided(teacher.Model, y, 2.0, teacher.Diffusion.EpsFromOutput);
            if (y.item<long>() == 2) eps = (xt, t) => teacher.Model.forward(xt, t, y); // ∅: the unconditional model
            for (int j = 2 * i; j < 2 * i + 2; j++)
                x = teacherSampler.Step(eps(x, full(1, (long)target.TeacherTimesteps[j], dtype: int64)), j, x, null);
            AssertClose(x, end.narrow(0, b, 1), $"two teacher steps from student step {i}");

            // x̃ is the x̂_0 with which one student DDIM step (unclipped) from z lands on z''.
            double a = schedule.AlphasCumprod[target.StudentTimesteps[i]];
            var studentEps = (z.narrow(0, b, 1) - Math.Sqrt(a) * xTilde.narrow(0, b, 1)) / Math.Sqrt(1 - a);
            var studentStep = studentSampler.Step(studentEps, i, z.narrow(0, b, 1), null);
            AssertClose(studentStep, end.narrow(0, b, 1), $"one student step {i} from x̃");
        }
        AssertClose(xTilde.narrow(0, 3, 1), end.narrow(0, 3, 1), "the last step's x̃ is the teacher's x̂_0");
    }

    [Fact]
    public void One_step_lowers_the_students_loss_against_the_two_step_teacher_target_and_leaves_the_teacher_alone()
    {
        var options = DistillationFixtures.Options(DistillationFixtures.Teacher(_dir)) with { Lr = 1e-4 };
        using var run = ProgressiveDistillation.Start(options, DistillationFixtures.Cpu);
        using var scope = NewDisposeScope();
        using var data = SyntheticImages.Create(16, 1, 8, seed: 5);
        using var g = new Generator(3, new Device("cpu"));
        var x0 = data.Batch(arange(16, dtype: int64));
        var labels = data.Labels!.clone();
        var index = randint(0, run.Target.StudentSteps, [16], dtype: int64, generator: g);
        var noise = randn([16, 1, 8, 8], generator: g);
        var teacherBefore = TeacherOutput(run, x0, labels);

        float before;
        using (no_grad()) before = run.Loss(x0, labels, index, noise).item<float>();
        float reported = run.TrainStep(x0, labels, index, noise, lr: 1e-4);
        float after;
        using (no_grad()) after = run.Loss(x0, labels, index, noise).item<float>();

        Assert.Equal(before, reported, 5);
        Assert.True(after < before, $"the loss on the batch went from {before:G6} to {after:G6}");
        Assert.True(before > 1e-3, $"the student starts at its teacher's weights, not at the target: loss {before:G6}");
        var teacherAfter = TeacherOutput(run, x0, labels);
        Assert.True(teacherBefore.eq(teacherAfter).all().item<bool>(), "the step changed the teacher");
        Assert.Equal(1, run.Step);
    }

    private static Tensor TeacherOutput(ProgressiveDistillation run, Tensor x, Tensor labels)
    {
        using var noGrad = no_grad();
        return run.TeacherFor(labels)(x, full(x.shape[0], 30L, dtype: int64));
    }

    private static void AssertClose(Tensor expected, Tensor actual, string what)
    {
        double diff = (expected - actual).abs().max().item<float>();
        double scale = expected.abs().max().item<float>();
        Assert.True(diff <= 1e-5 * Math.Max(1, scale), $"{what}: max |difference| {diff:G3} (values up to {scale:G3})");
    }
}
