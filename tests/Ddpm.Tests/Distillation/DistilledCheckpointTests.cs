using System.Text;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Distillation;
using Ddpm.Sampling;
using Ddpm.Server;
using Ddpm.Tests.Reliability;
using Ddpm.Training;

namespace Ddpm.Tests.Distillation;

/// <summary>
/// A distillation run in a folder: its students as ordinary checkpoints that know their grid, and an exact resume.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class DistilledCheckpointTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("distill-run");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_distilled_checkpoint_round_trips_with_its_grid_and_refuses_a_mismatched_step_count()
    {
        var options = DistillationFixtures.Options(DistillationFixtures.Teacher(_dir));
        var run = new DistillationRequest(options, Path.Combine(_dir, "run"));
        var outcome = DistillationRun.Run(run, DistillationFixtures.Cpu);
        Assert.False(outcome.Interrupted);
        Assert.Equal([2, 4], outcome.Students.Keys.Order());

        var manifest = Checkpoint.ReadManifest(outcome.Students[2]);
        Assert.Equal(CheckpointManifest.CurrentFormat, manifest.Format);
        var schedule = NoiseSchedule.FromOptions(DistillationFixtures.TeacherConfig().Diffusion);
        var firstGrid = StepGrid.Teacher(schedule, 8, SpacingKind.Uniform);
        Assert.Equal([firstGrid[0], firstGrid[4]], manifest.Distilled!.Timesteps);
        Assert.Equal(2.0, manifest.Distilled.Guidance);
        using (var reader = CheckpointReader.Open(outcome.Students[2]))
            Assert.Equal(PredictionTarget.V, reader.Config.Diffusion.Prediction);
        Assert.Equal(CheckpointManifest.PlainFormat, Checkpoint.ReadManifest(options.Teacher).Format);

        using var generator = ImageGenerator.Load(outcome.Students[2]);
        Assert.Equal(manifest.Distilled.Timesteps, generator.Distilled!.Timesteps);
        // A caller's defaults (the library's, ddpm sample's) run the student's own grid.
        var defaults = new[]
        {
            new SamplerOptions(), new SamplerOptions { Kind = SamplerOptions.RecommendedKind },
            new SamplerOptions { Steps = 2 },
        };
        foreach (var sampler in defaults)
        {
            var request = new GenerationRequest { Count = 3, Sampler = sampler, Labels = [0, 1, 0], Guidance = 2 };
            using var result = generator.Generate(request);
            Assert.Equal(manifest.Distilled.Timesteps, result.Timesteps);
            Assert.True(result.Images.isfinite().all().item<bool>());
        }
        using (var unconditional = generator.Generate(new GenerationRequest { Count = 2 }))
            Assert.Equal(2, unconditional.Timesteps.Count);

        ArgumentException Refused(GenerationRequest request) =>
            Assert.Throws<ArgumentException>(() => generator.Plan(request));
        var wrongSteps = Refused(new GenerationRequest { Sampler = new SamplerOptions { Steps = 4 } });
        Assert.Contains("distilled for 2 steps", wrongSteps.Message);
        Assert.Contains($"{firstGrid[0]}/{firstGrid[4]}", wrongSteps.Message);
        var wrongSampler = Refused(new GenerationRequest { Sampler = new SamplerOptions { Kind = SamplerKind.UniPc } });
        Assert.Contains("distilled for DDIM", wrongSampler.Message);
        var wrongGuidance = Refused(new GenerationRequest { Labels = [1], Guidance = 0 });
        Assert.Contains("guidance w = 2 built in", wrongGuidance.Message);

        // The CLI says the same, as a usage error, before sampling anything.
        var samples = Path.Combine(_dir, "s");
        var (code, stderr) = TinyCli.RunCapturingStderr("sample", "--checkpoint", outcome.Students[4], "--steps", "8",
            "--out", samples, "--device", "cpu");
        Assert.Equal(2, code);
        Assert.Contains("distilled for 4 steps", stderr);
        Assert.Equal(0, TinyCli.Run("sample", "--checkpoint", outcome.Students[4], "--num", "4", "--frames", "0",
            "--out", samples, "--device", "cpu"));
        Assert.True(File.Exists(Path.Combine(samples, "samples.png")));

        // ddpm serve lists the student with its grid; a request without steps gets them, a mismatched one a 400.
        var catalog = new RunsCatalog(new RunsFolder(Path.Combine(_dir, "run")));
        var listed = catalog.Scan().SelectMany(r => r.Checkpoints).Single(c => c.Name == "student-2.ckpt");
        Assert.Equal(manifest.Distilled.Timesteps, listed.Model.Distilled!.Timesteps);
        ServeRequest Serve(string json) =>
            ServeRequestParser.Parse(Encoding.UTF8.GetBytes(json.Replace("ID", listed.Id)), catalog,
                new GenerationLimits());
        var served = Serve("""{"checkpoint": "ID", "count": 2, "class": 1, "guidance": 2}""");
        Assert.Equal(2, served.Steps);
        Assert.Equal(manifest.Distilled.Timesteps, served.Sampler.Timesteps);
        var refused = Assert.Throws<BadRequestException>(() => Serve("""{"checkpoint": "ID", "steps": 20}"""));
        Assert.Contains("distilled for 2 steps", refused.Message);
    }

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Theory]
    [InlineData(3)] // mid round 1: resumes with the original teacher
    [InlineData(8)] // mid round 2: resumes with round 1's student as the teacher
    [InlineData(6)] // at the end of round 1: round 2 starts on resume
    public void Resuming_a_stopped_distillation_gives_the_same_students_and_state_as_one_run(int stopAfter)
    {
        var options = DistillationFixtures.Options(DistillationFixtures.Teacher(_dir));
        var straight = Path.Combine(_dir, "straight");
        var split = Path.Combine(_dir, "split");
        DistillationRun.Run(new DistillationRequest(options, straight), DistillationFixtures.Cpu);

        using (var stop = new CancellationTokenSource())
        {
            var first = DistillationRun.Run(new DistillationRequest(options, split), DistillationFixtures.Cpu,
                onStep: s => { if (s.Step == stopAfter) stop.Cancel(); }, cancel: stop.Token);
            Assert.True(first.Interrupted);
            Assert.Equal(stopAfter, first.Step);
        }
        // Resuming takes every setting from the checkpoint (the teacher's path too).
        var request = new DistillationRequest(options with { Teacher = "" }, split, Resume: true);
        var resumed = DistillationRun.Run(request, DistillationFixtures.Cpu);
        Assert.False(resumed.Interrupted);
        Assert.Equal(12, resumed.Step);

        string[] weights = ["model.safetensors", "ema.safetensors"];
        foreach (var file in new[] { "checkpoint.ckpt", "student-4.ckpt", "student-2.ckpt" })
        {
            var a = ExactResumeCliTests.Entries(Path.Combine(straight, file));
            var b = ExactResumeCliTests.Entries(Path.Combine(split, file));
            foreach (var name in file == "checkpoint.ckpt" ? [.. weights, "optimizer.bin", "rng.bin"] : weights)
                Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{file}: {name} differs from the straight run's");
        }
        var log = File.ReadAllLines(Path.Combine(straight, "loss.csv"));
        Assert.Equal(13, log.Length);
        Assert.Equal(log, File.ReadAllLines(Path.Combine(split, "loss.csv")));
    }
}
