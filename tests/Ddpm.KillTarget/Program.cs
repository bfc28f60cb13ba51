// Usage: Ddpm.KillTarget <out-dir> <keep>
// Resumes from <out-dir>/checkpoint.ckpt when present, else starts a tiny 8×8 model; then forever: one training epoch of one step,
// four checkpoints of it (rotated as the CLI does). Prints "ready <step>" after its first checkpoint so the test knows the
// process is inside its save loop before it picks a random moment to SIGKILL it.
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Training;
using static TorchSharp.torch;

// Dies with the test host: exits when the PID in DDPM_EXIT_WITH_PARENT is gone or stdin closes (a crashed host must not
// leave this loop writing checkpoints at full CPU).
Ddpm.Runtime.ParentWatch.StartFromEnvironment();
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
