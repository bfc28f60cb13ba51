// Usage: Ddpm.KillTarget <out-dir> <keep> Resumes from <out-dir>/checkpoint.ckpt when present, else starts a tiny 8×8
// model; then forever: one training epoch of one step, four checkpoints of it (rotated as the CLI does). Prints "ready
// <step>" after its first checkpoint so the test knows the process is inside its save loop before it picks a random
// moment to SIGKILL it. <out-dir>/kill-phase (one byte, mapped shared) is 1 while a save runs and 0 otherwise: the test
// waits for a save before its kill and reads, after the kill, whether the process died inside one (the page outlives
// the process).
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Runs;
using Ddpm.Training;
using static TorchSharp.torch;

// Dies with the test host: exits when the PID in DDPM_EXIT_WITH_PARENT is gone or stdin closes (a crashed host must not
// leave this loop writing checkpoints at full CPU).
Ddpm.Runtime.ParentWatch.StartFromEnvironment();
Ddpm.Runtime.DevicePolicy.Apply(CPU); // the host's policy, before any model
// Usage 2: Ddpm.KillTarget --page-faults — on the main thread, after DevicePolicy: twelve rounds of a U-Net-sized
// convolution block on 200 images of 32×28×28 (tens of MiB of activations made and freed per round, as a sampling step
// makes them); prints the policy's allocator line and each round's minor page faults (HostAllocatorTests compares
// DDPM_MALLOC=0 with the default).
if (args is ["--page-faults"])
{
    static long MinorFaults()
    {
        var stat = File.ReadAllText("/proc/self/stat");
        return long.Parse(stat[(stat.LastIndexOf(')') + 2)..].Split(' ')[7], System.Globalization.CultureInfo.InvariantCulture); // field 10
    }
    manual_seed(0);
    using var x = randn(200, 32, 28, 28);
    using var conv1 = nn.Conv2d(32, 64, 3, padding: 1);
    using var conv2 = nn.Conv2d(64, 32, 3, padding: 1);
    var faults = new List<long>();
    using (no_grad())
        for (int i = 0; i < 12; i++)
        {
            long before = MinorFaults();
            using (var scope = NewDisposeScope())
            {
                var y = conv2.forward(nn.functional.silu(conv1.forward(x))) + x;
                if (!isfinite(y).all().item<bool>()) throw new InvalidOperationException("non-finite convolution output");
            }
            faults.Add(MinorFaults() - before);
        }
    Console.WriteLine(Ddpm.Runtime.DevicePolicy.HostAllocator);
    Console.WriteLine(string.Join(' ', faults));
    return 0;
}
// Usage 3: Ddpm.KillTarget --race <seconds> <threads> [op,op,…] [--min-runs N] — every public entry point of the
// library (and a user's tensor arithmetic) on <threads> threads at once beside a thread forcing garbage collections,
// each result compared with the same call's result alone (RaceScenario); with --min-runs the race goes on past
// <seconds> until every operation has run N times. TorchSharpRaceTests runs it on the patched TorchSharp.dll and, as
// the control, on the NuGet package's.
if (args is ["--race", var seconds, var threads, .. var rest])
{
    var invariant = System.Globalization.CultureInfo.InvariantCulture;
    int minRuns = 0;
    if (rest is [.. var head, "--min-runs", var n])
    {
        minRuns = int.Parse(n, invariant);
        rest = head;
    }
    if (rest.Length <= 1)
        return Ddpm.KillTarget.RaceScenario.Run(double.Parse(seconds, invariant), int.Parse(threads, invariant),
            rest is [var names] ? names.Split(',') : null, minRuns);
}
var outDir = args[0];
int keep = int.Parse(args[1], System.Globalization.CultureInfo.InvariantCulture);
set_num_threads(1);
var folder = new CheckpointFolder(outDir, keep);
var config = new DdpmConfig
{
    Dataset = new DatasetOptions { Name = "synthetic" },
    Diffusion = new DiffusionOptions { NumTimesteps = 50, BetaStart = 1e-4, BetaEnd = 0.2 },
    Model = new UNetOptions
    {
        ImChannels = 1, ImSize = 8, DownChannels = [8, 16, 16, 16], MidChannels = [16, 16, 16], DownSample = [true, true, false],
        TimeEmbDim = 16, NumDownLayers = 1, NumMidLayers = 1, NumUpLayers = 1, NumHeads = 4,
    },
    Train = new TrainOptions { BatchSize = 8, NumEpochs = 1_000_000, Lr = 1e-3, KeepCheckpoints = keep, EmaDecay = 0.99 },
}.Validate();
var cpu = new Device("cpu");
using var trainer = File.Exists(folder.LatestPath) ? Trainer.Resume(folder.LatestPath, cpu) : Trainer.Create(config, cpu);
using var data = SyntheticImages.Create(8, 1, 8);
Directory.CreateDirectory(outDir);
using var phaseFile = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(Path.Combine(outDir, "kill-phase"),
    FileMode.OpenOrCreate, null, 1);
using var phase = phaseFile.CreateViewAccessor(0, 1);
bool announced = false;
while (true)
{
    trainer.TrainEpoch(data, s => { }, default);
    // Several saves per step (the same step rewritten and republished) so most of the time is spent writing
    // checkpoints.
    for (int i = 0; i < 4; i++)
    {
        phase.Write(0, (byte)1);
        folder.Save(trainer.Step, trainer.Save);
        phase.Write(0, (byte)0);
    }
    if (!announced)
    {
        Console.WriteLine($"ready {trainer.Step}");
        Console.Out.Flush();
        announced = true;
    }
}
