namespace Ddpm.Tests.Distillation;

/// <summary>
/// <c>ddpm distill</c>: a run folder from the command line, and the usage errors it answers before any work.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class DistillCliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("distill-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Distill_writes_a_student_per_round_and_answers_misuse_with_usage_errors()
    {
        var teacher = DistillationFixtures.Teacher(_dir);
        var run = Path.Combine(_dir, "run");
        string[] args = ["distill", "--teacher", teacher, "--to-steps", "2", "--from-steps", "4",
            "--steps-per-round", "3", "--batch-size", "8", "--guidance", "2", "--out", run, "--device", "cpu"];
        Assert.Equal(0, TinyCli.Run(args));
        string[] written =
            ["student-2.ckpt", "student-2.png", "checkpoint.ckpt", "loss.csv", "train_log.csv", "config.yaml"];
        foreach (var file in written)
            Assert.True(File.Exists(Path.Combine(run, file)), file);
        Assert.False(File.Exists(Path.Combine(run, "train.lock")));
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length); // header + 3 steps

        (int Code, string Error) Cli(params string[] a) => TinyCli.RunCapturingStderr(a);
        var again = Cli(args);
        Assert.Equal(2, again.Code);
        Assert.Contains("already holds a run", again.Error);
        Assert.True(File.Exists(Path.Combine(run, "checkpoint.ckpt")), "a refused fresh run removed the run it found");
        var resumeWithSettings = Cli("distill", "--out", run, "--resume", "--lr", "0.1");
        Assert.Equal(2, resumeWithSettings.Code);
        Assert.Contains("give only --out", resumeWithSettings.Error);
        var noTeacher = Cli("distill", "--out", Path.Combine(_dir, "other"), "--to-steps", "2");
        Assert.Equal(2, noTeacher.Code);
        Assert.Contains("--teacher is required", noTeacher.Error);
        var other = Path.Combine(_dir, "other");
        var missing = Cli("distill", "--teacher", Path.Combine(_dir, "nothing.ckpt"), "--out", other);
        Assert.Equal(2, missing.Code);
        Assert.Contains("no checkpoint at", missing.Error);
        Assert.False(Directory.Exists(other), "a refused run left a folder behind");
        var badGrid = Cli("distill", "--teacher", teacher, "--to-steps", "4", "--from-steps", "12", "--out", other);
        Assert.Equal(2, badGrid.Code);
        Assert.Contains("to-steps × 2^k", badGrid.Error);
        // A finished run resumes to nothing more (and says where its students are).
        var finished = Cli("distill", "--out", run, "--resume", "--device", "cpu");
        Assert.True(finished.Code == 0, finished.Error);
        Assert.Equal(4, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length);
    }
}
