// Usage: Ddpm.KillTarget <out-dir> <keep>
// Resumes from <out-dir>/checkpoint.ckpt when present, else starts a tiny 8×8 model; then forever: one training epoch of one step,
// four checkpoints of it (rotated as the CLI does). Prints "ready <step>" after its first checkpoint so the test knows the
// process is inside its save loop before it picks a random moment to SIGKILL it.
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
    return;
}
// Usage 3: Ddpm.KillTarget --scalar-race <seconds> — inside FinalizerHold's region (a boundary after each result), the
// main thread computes (a + 0.5·b − 1.5)·2 on small tensors (TorchSharp makes a native Scalar for every number and for
// the implicit alpha of + and −) while another thread allocates garbage. Prints: results, wrong results, garbage rounds
// of 2 MB, holds started. With DDPM_FINALIZER_HOLD=0 libtorch soon reads a Scalar the finalizer already freed (the
// process aborts); FinalizerHoldTests runs both.
if (args is ["--scalar-race", var seconds])
{
    set_num_threads(1);
    using var a = ones(64);
    using var b = full(64, 2.0);
    var until = DateTime.UtcNow.AddSeconds(double.Parse(seconds, System.Globalization.CultureInfo.InvariantCulture));
    long rounds = 0;
    var garbage = new Thread(() =>
    {
        byte[] last = [];
        while (DateTime.UtcNow < until)
        {
            for (int k = 0; k < 1000; k++) last = new byte[2000];
            rounds++;
        }
        GC.KeepAlive(last);
    }) { IsBackground = true };
    garbage.Start();
    long results = 0, wrong = 0;
    var region = Ddpm.Runtime.FinalizerHold.Enter();
    while (DateTime.UtcNow < until)
    {
        using (var scope = NewDisposeScope())
        {
            var z = (a + b * 0.5 - 1.5) * 2.0; // 1 everywhere
            if (z.sum().item<float>() != 64f) wrong++;
        }
        results++;
        Ddpm.Runtime.FinalizerHold.Boundary();
    }
    region.Dispose();
    garbage.Join();
    Console.WriteLine($"{results} {wrong} {rounds} {Ddpm.Runtime.FinalizerHold.HoldsStarted}");
    return;
}
// Usage 4: Ddpm.KillTarget --hold <scenario> — one of HoldScenarios' checks of FinalizerHold, alone in a process (the
// hold is process-wide: in the test host other tests' regions would change the timings).
if (args is ["--hold", var scenario])
{
    HoldScenarios.Run(scenario);
    return;
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
bool announced = false;
while (true)
{
    trainer.TrainEpoch(data, s => { }, default);
    // Several saves per step (the same step rewritten and republished) so most of the time is spent writing checkpoints.
    for (int i = 0; i < 4; i++) folder.Save(trainer.Step, trainer.Save);
    if (!announced)
    {
        Console.WriteLine($"ready {trainer.Step}");
        Console.Out.Flush();
        announced = true;
    }
}
