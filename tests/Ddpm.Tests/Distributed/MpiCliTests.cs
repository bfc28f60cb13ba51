using System.Diagnostics;
using System.Text.RegularExpressions;
using Ddpm.Cli;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.Tests.Reliability;
using Ddpm.Training;
using static Ddpm.Tests.Distributed.WeightComparison;

namespace Ddpm.Tests.Distributed;

/// <summary><c>mpirun -n 2 ddpm …</c> against one process: the real launcher, the real MPI, separate
/// processes.</summary>
[Collection(GlobalRngCollection.Name)]
[Trait(TestCategory.Name, TestCategory.Process)]
public class MpiCliTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(4);
    private readonly string _dir = TestPaths.TempDir("mpi-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Config(int batch)
    {
        var path = Path.Combine(_dir, $"tiny-{batch}.yaml");
        File.WriteAllText(path, TinyCli.Yaml(batchSize: batch, extraTrain: "  ema_decay: 0.9\n"));
        return path;
    }

    [MpiFact]
    public void Two_processes_train_like_one_with_the_union_batch_and_resume_exactly()
    {
        // Per-rank batch 4 against one process with batch 8, as in DataParallelTests: libtorch's CPU kernels compute a
        // batch of 8 and two of 4 alike to rounding (measured: live weights 1.2e-7 relative after 6 steps). With 8
        // against 16 they do not (measured in one process: the batch-16 gradient and the mean of two batch-8 ones
        // differ by 1.5e-6 relative, which Adam turns into 9e-6 on the weights after 6 steps, with 2 ranks as with 2
        // threads).
        var config = Config(4);
        string straight = Path.Combine(_dir, "straight"), split = Path.Combine(_dir, "split"), single = Path.Combine(_dir, "single");
        // 512 images, global batch 8: 64 steps per epoch; 6 steps, resumed after 3 (mid-epoch).
        var (_, stderr) = Mpirun.Run(2, Limit, "train", "--config", config, "--out", straight, "--max-steps", "6", "--device", "cpu");
        Mpirun.Run(2, Limit, "train", "--config", config, "--out", split, "--max-steps", "3", "--device", "cpu");
        Mpirun.Run(2, Limit, "train", "--config", config, "--out", split, "--max-steps", "6", "--device", "cpu", "--resume");
        int threads = TorchSharp.torch.get_num_threads();
        TorchSharp.torch.set_num_threads(1);
        try { Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", single, "--max-steps", "6", "--device", "cpu", "--batch-size", "8")); }
        finally { TorchSharp.torch.set_num_threads(threads); }

        // Both ranks hold the same weights: rank 0 logs the checksum every rank agreed on, and it is that of its
        // checkpoint.
        var agreed = Regex.Match(stderr, @"weights bit-identical on all 2 ranks after step 6 \(checksum ([0-9a-f]{16})\)");
        Assert.True(agreed.Success, $"no agreement line in:\n{stderr}");
        var (model, cfg, manifest) = Checkpoint.LoadModel(Path.Combine(straight, "checkpoint.ckpt"));
        using (model)
        {
            Assert.Equal(2, manifest.WorldSize);
            Assert.Equal(6, manifest.Step);
            using var flat = TorchSharp.torch.cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray());
            Assert.Equal(agreed.Groups[1].Value, WeightChecksum.Of(flat).ToString("x16"));

            // One process over the union batch: equal to rounding where the gradient is not identically zero.
            var (one, _, _) = Checkpoint.LoadModel(Path.Combine(single, "checkpoint.ckpt"));
            using (one)
            using (var data = SyntheticImages.Create(512, 1, 8))
            {
                double rel = RelativeDifference(Flat(model), Flat(one), Live(cfg, data));
                Assert.True(rel <= 1e-6, $"2 processes × batch 4 differ from 1 × batch 8 by {rel:E2} (relative)");
            }
        }

        // Resumed under mpirun -n 2: bit for bit the run straight through.
        var a = ExactResumeCliTests.Entries(Path.Combine(straight, "checkpoint.ckpt"));
        var b = ExactResumeCliTests.Entries(Path.Combine(split, "checkpoint.ckpt"));
        foreach (var name in new[] { "model.safetensors", "ema.safetensors", "optimizer.bin", "rng.bin" })
            Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{name} differs between the straight and the resumed 2-process run");
        // Only rank 0 wrote: one loss line per step.
        Assert.Equal(7, File.ReadAllLines(Path.Combine(straight, "loss.csv")).Length);

        // Another number of processes is refused with a message.
        var (code, err) = CliWithStderr("train", "--config", config, "--out", split, "--max-steps", "8", "--device", "cpu", "--resume");
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("was written by a run over 2 process(es) and this run has 1", err);
    }

    [MpiFact]
    public void A_killed_rank_ends_the_job_within_a_bounded_time_and_the_last_checkpoint_stays_intact()
    {
        var config = Config(16);
        var outDir = Path.Combine(_dir, "killed");
        using var run = Mpirun.Start(2, "train", "--config", config, "--out", outDir, "--device", "cpu");
        // Global batch 32: 16 steps per epoch, a checkpoint after each.
        run.WaitUntil(() => run.Stderr.Contains("epoch 1: mean loss"), Limit, "the first epoch's checkpoint");
        int victim = Mpirun.RankProcess(run.Process, 1) ?? throw new Xunit.Sdk.XunitException($"rank 1 not found among mpirun's children\n{run.Stderr}");
        var clock = Stopwatch.StartNew();
        ChildProcess.Signal(Process.GetProcessById(victim), ChildProcess.Sigkill);
        int code = run.WaitForExit(TimeSpan.FromSeconds(60));
        // Open MPI notices the dead rank and stops the other (measured: 2.6 s); rank 0 never waits for it.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60));
        Assert.NotEqual(0, code);
        Assert.Matches(@"process rank 1 .* exited on signal 9", run.Stderr);
        using var checkpoint = CheckpointReader.Open(Path.Combine(outDir, "checkpoint.ckpt")); // verifies every entry's SHA-256
        Assert.True(checkpoint.Manifest.Step >= 16 && checkpoint.Manifest.Step % 16 == 0, $"step {checkpoint.Manifest.Step}");
        Assert.Equal(2, checkpoint.Manifest.WorldSize);
        using var model = checkpoint.LoadModel();
    }

    [MpiFact]
    public void Two_processes_sample_the_grid_of_one_image_for_image()
    {
        var checkpoint = Path.Combine(_dir, "one-step", "checkpoint.ckpt");
        Assert.Equal(0, TinyCli.Run("train", "--config", Config(4), "--out", Path.GetDirectoryName(checkpoint)!, "--max-steps", "1", "--device", "cpu"));
        // 10 images in batches of 1: the ranks make [0,5) and [5,10) in the batch shapes one process uses, so bit for
        // bit (ImageGenerator's images depend on the batch shapes only through float32 rounding). One libtorch thread
        // everywhere.
        string[] sample = ["sample", "--checkpoint", checkpoint, "--num", "10", "--grid-rows", "5", "--batch-size", "1", "--seed", "3",
            "--frames", "0", "--device", "cpu"];
        var (stdout, stderr) = Mpirun.Run(2, ["OMP_NUM_THREADS=1"], Limit, [.. sample, "--out", Path.Combine(_dir, "sharded")]);
        Assert.Contains("sampled 10 images over 2 processes", stderr);
        // Rank 0 alone reports (mpirun's output may carry terminal control codes around it).
        Assert.Single(Regex.Matches(stdout, Regex.Escape(Path.Combine(_dir, "sharded", "samples.png"))));
        Assert.Single(Regex.Matches(stderr, "sampled 10 images"));
        int threads = TorchSharp.torch.get_num_threads();
        TorchSharp.torch.set_num_threads(1);
        try { Assert.Equal(0, TinyCli.Run([.. sample, "--out", Path.Combine(_dir, "single")])); }
        finally { TorchSharp.torch.set_num_threads(threads); }

        // The same PNG bytes: every pixel of every image (the encoder is deterministic).
        Assert.Equal(File.ReadAllBytes(Path.Combine(_dir, "single", "samples.png")), File.ReadAllBytes(Path.Combine(_dir, "sharded", "samples.png")));
        Assert.False(File.Exists(Path.Combine(_dir, "sharded", "reverse.png")));
    }

    private static (int Code, string Stderr) CliWithStderr(params string[] args)
    {
        var (stdout, stderr) = (Console.Out, Console.Error);
        var captured = new StringWriter();
        try
        {
            Console.SetOut(TextWriter.Null);
            Console.SetError(captured);
            return (CliApp.Run(args), captured.ToString());
        }
        finally
        {
            Console.SetOut(stdout);
            Console.SetError(stderr);
        }
    }
}
