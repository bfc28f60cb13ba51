using System.Diagnostics;
using System.Security.Cryptography;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Distillation;

/// <summary>
/// Progressive distillation (Salimans &amp; Ho 2022, Algorithm 2) as a trainer beside <see cref="Trainer"/>, built from
/// its parts (<see cref="FlatAdam"/>, <see cref="ExponentialMovingAverage"/>, <see cref="Checkpoint"/>,
/// <see cref="BatchSampler"/>, <see cref="LearningRateSchedule"/>). Round r trains a student of N_r steps, initialised
/// from its teacher, to take in one DDIM step what the teacher takes in two; the next round's teacher is this round's
/// student (its EMA), read back from the file <see cref="SaveStudent"/> wrote. Per step: a batch x_0 of the data with
/// its labels (each dropped to the null label with <see cref="DistillationOptions.LabelDropout"/>), a student step i ~
/// U{0..N−1}, ε ~ N(0, I), z_t = α_t x_0 + σ_t ε, the target x̃ from two teacher steps
/// (<see cref="ProgressiveTarget"/>), and the student's own loss on it (its ε/x_0/v as the target: with v, the paper's
/// "SNR + 1" weighting of ‖x̂_0 − x̃‖²). Given data, never opens folders except to read its teacher. Randomness is
/// reproducible: data order from <see cref="BatchSampler"/> streams, everything else from one generator whose state is
/// checkpointed, so a resumed run is bit-identical to one run straight through (on the CPU).
/// </summary>
public sealed class ProgressiveDistillation : IDisposable
{
    private UNet _teacher;
    private GaussianDiffusion _teacherDiffusion;
    private double _teacherGuidance;
    private UNet _student;
    private FlatAdam _adam;
    private ExponentialMovingAverage _ema;
    private ProgressiveTarget _target;

    public DistillationOptions Options { get; }
    /// <summary>
    /// The student's config: the teacher's, with <c>prediction</c> the student's and the distillation's train settings.
    /// </summary>
    public DdpmConfig StudentConfig { get; }
    public GaussianDiffusion StudentDiffusion { get; }
    public Device Device { get; }
    /// <summary>
    /// Draws the steps i, the noise and the label dropout; on the CPU, so runs reproduce across devices.
    /// </summary>
    public Generator Generator { get; }
    /// <summary>The teacher's first grid; round r's student takes every 2^r-th timestep of it.</summary>
    public IReadOnlyList<int> FirstGrid { get; }
    /// <summary>The round being trained (1-based) and how many there are.</summary>
    public int Round { get; private set; }
    public int Rounds => Options.Rounds;
    /// <summary>Optimizer steps done in <see cref="Round"/>, and over all rounds.</summary>
    public long StepInRound { get; private set; }
    public long Step { get; private set; }
    /// <summary>SHA-256 of the file the current round's teacher came from, and of the original teacher.</summary>
    public string TeacherSha256 { get; private set; }
    public string OriginalTeacherSha256 { get; }
    public long OriginalTeacherStep { get; }
    /// <summary>The round's target (teacher and student grids).</summary>
    public ProgressiveTarget Target => _target;
    /// <summary>
    /// The student being trained, and its EMA (what is saved as the distilled model and teaches the next round).
    /// </summary>
    public UNet Student => _student;
    public UNet StudentEma => _ema.Shadow;
    /// <summary>The guidance weight built into the student (0 for an unconditional teacher).</summary>
    public double Guidance { get; }
    public bool RoundFinished => StepInRound >= Options.StepsPerRound;
    public bool Finished => Round >= Rounds && RoundFinished;
    /// <summary>
    /// The learning rate of each step of a round: warm-up, then linear to 0 at its end (the paper's annealing).
    /// </summary>
    public LearningRateSchedule LearningRates =>
        new(Options.Lr, LrScheduleKind.Linear, Options.WarmupSteps, Options.StepsPerRound);

    /// <summary>What the current round's student samples: DDIM on its grid with the teacher's guidance.</summary>
    public DistilledGrid Grid => new()
    {
        Timesteps = _target.StudentTimesteps.ToArray(), Guidance = Guidance, ClipX0 = Options.ClipX0,
    };

    private ProgressiveDistillation(DistillationOptions options, DdpmConfig studentConfig, Device device,
        TeacherModel teacher, IReadOnlyList<int> firstGrid, int round, string originalSha, long originalStep,
        double guidance)
    {
        Options = options;
        StudentConfig = studentConfig;
        StudentDiffusion = GaussianDiffusion.FromOptions(studentConfig.Diffusion);
        Device = device;
        FirstGrid = firstGrid.ToArray();
        OriginalTeacherSha256 = originalSha;
        OriginalTeacherStep = originalStep;
        Guidance = guidance;
        Generator = new Generator((ulong)options.Seed, new Device("cpu"));
        Round = round;
        (_teacher, _teacherDiffusion, TeacherSha256) = (teacher.Model, teacher.Diffusion, teacher.Sha256);
        _teacherGuidance = round == 1 ? guidance : 0;
        _target = TargetOfRound(round);
        (_student, _adam, _ema) = StudentFrom(_teacher);
    }

    private ProgressiveTarget TargetOfRound(int round) =>
        new(StudentDiffusion.Schedule, StepGrid.TeacherOfRound(FirstGrid, round), Options.ClipX0);

    /// <summary>
    /// A teacher as read from its file: the network (EMA weights when used), its process and its identity.
    /// </summary>
    private sealed record TeacherModel(UNet Model, GaussianDiffusion Diffusion, DdpmConfig Config,
        CheckpointManifest Manifest, string Sha256);

    /// <summary>
    /// Round 1 from <see cref="DistillationOptions.Teacher"/>: its EMA weights (unless told otherwise) teach, and start
    /// the student.
    /// </summary>
    /// <exception cref="ArgumentException">Options that do not fit the teacher (guidance for an unconditional model,
    /// too many steps).</exception>
    public static ProgressiveDistillation Start(DistillationOptions options, Device device)
    {
        options.Validate();
        var teacher = LoadTeacher(options.Teacher, options.TeacherEma, device);
        try
        {
            if (teacher.Manifest.Distilled is not null)
                throw new ArgumentException($"{options.Teacher} is already a distilled student " +
                    $"({teacher.Manifest.Distilled.Steps} steps); distil its teacher instead");
            double guidance = GuidanceFor(options, teacher.Config);
            var grid = FirstGridFor(options, teacher.Config.Diffusion);
            var config = StudentConfigFor(options, teacher.Config);
            return new ProgressiveDistillation(options, config, device, teacher, grid, round: 1, teacher.Sha256,
                teacher.Manifest.Step, guidance);
        }
        catch
        {
            teacher.Model.Dispose();
            throw;
        }
    }

    /// <summary>The guidance weight built into the student, checked against the teacher's config.</summary>
    private static double GuidanceFor(DistillationOptions o, DdpmConfig teacher)
    {
        bool conditional = teacher.Model.NumClasses > 0;
        if (!conditional && o.Guidance is > 0)
            throw new ArgumentException($"guidance {o.Guidance} needs a class-conditional teacher; " +
                $"{o.Teacher} is unconditional");
        double guidance = conditional ? o.Guidance ?? DistillationOptions.DefaultGuidance : 0;
        if (guidance > 0 && teacher.Train.LabelDropout <= 0)
            throw new ArgumentException($"{o.Teacher} was trained without label dropout, so its unconditional model " +
                "(and guidance) is untrained: distil it with guidance 0");
        return guidance;
    }

    /// <summary>The teacher's first DDIM grid (<see cref="DistillationOptions.ResolvedFromSteps"/> steps).</summary>
    private static int[] FirstGridFor(DistillationOptions o, DiffusionOptions diffusion)
    {
        int from = o.ResolvedFromSteps;
        if (from > diffusion.NumTimesteps)
            throw new ArgumentException($"from-steps {from} exceeds the teacher's T = {diffusion.NumTimesteps}");
        return StepGrid.Teacher(NoiseSchedule.FromOptions(diffusion), from, o.Spacing);
    }

    /// <summary>
    /// The student's config: the teacher's, with the student's prediction and the distillation's train settings.
    /// </summary>
    private static DdpmConfig StudentConfigFor(DistillationOptions o, DdpmConfig teacher) => (teacher with
    {
        Diffusion = teacher.Diffusion with { Prediction = o.StudentPrediction },
        Dataset = o.DataRoot is null ? teacher.Dataset : teacher.Dataset with { Root = o.DataRoot },
        Train = teacher.Train with
        {
            BatchSize = o.BatchSize,
            Lr = o.Lr,
            Seed = o.Seed,
            EmaDecay = o.EmaDecay,
            LabelDropout = teacher.Model.NumClasses > 0 ? o.LabelDropout : 0,
            MaxSteps = o.StepsPerRound * o.Rounds,
            LrSchedule = LrScheduleKind.Linear,
            LrWarmupSteps = o.WarmupSteps,
            MinSnrGamma = 0,
            Precision = Precision.Fp32,
        },
    }).Validate();

    /// <summary>
    /// Continues from a checkpoint <see cref="Save"/> wrote, with the round's teacher read from
    /// <paramref name="teacherPath"/> (the original teacher in round 1, the previous round's student after): it must be
    /// the file the run used (SHA-256).
    /// </summary>
    public static ProgressiveDistillation Resume(string checkpointPath, string teacherPath, Device device)
    {
        using var checkpoint = CheckpointReader.Open(checkpointPath);
        var state = checkpoint.Manifest.Distillation ?? throw new CheckpointException(checkpointPath,
            "is not a distillation checkpoint (its manifest has no distillation state)");
        if (!checkpoint.HasTrainingState)
            throw new CheckpointException(checkpointPath,
                "holds weights only (no optimizer/RNG state), so distillation cannot resume from it");
        var teacher = LoadTeacher(teacherPath, state.Round == 1 ? state.Options.TeacherEma : true, device);
        ProgressiveDistillation run;
        try
        {
            if (teacher.Sha256 != state.TeacherSha256)
                throw new CheckpointException(teacherPath, $"is not the teacher round {state.Round} of " +
                    $"{checkpointPath} learned from (SHA-256 {teacher.Sha256[..12]}…, expected " +
                    $"{state.TeacherSha256[..Math.Min(12, state.TeacherSha256.Length)]}…)");
            var config = checkpoint.Config;
            double guidance = checkpoint.Manifest.Distilled?.Guidance
                ?? throw new CheckpointException(checkpointPath, "has distillation state but no distilled grid");
            var grid = FirstGridFor(state.Options, config.Diffusion);
            if (!StepGrid.TeacherOfRound(grid, state.Round).SequenceEqual(state.TeacherTimesteps))
                throw new CheckpointException(checkpointPath, "its teacher grid does not follow from its options");
            run = new ProgressiveDistillation(state.Options, config, device, teacher, grid, state.Round,
                state.OriginalTeacherSha256, state.OriginalTeacherStep, guidance);
        }
        catch
        {
            teacher.Model.Dispose();
            throw;
        }
        try
        {
            run.LoadState(checkpoint, state);
            return run;
        }
        catch
        {
            run.Dispose();
            throw;
        }
    }

    private void LoadState(CheckpointReader checkpoint, DistillationState state)
    {
        using (var weights = checkpoint.LoadModel())
            CopyWeights(weights, _student);
        checkpoint.LoadTrainingState(new Checkpoint.TrainingState(_adam.Optimizer, Generator));
        _adam.SyncUpdatesFromState();
        if (checkpoint.HasEma) checkpoint.LoadEmaInto(_ema.Shadow);
        StepInRound = state.StepInRound;
        Step = checkpoint.Manifest.Step;
    }

    private static TeacherModel LoadTeacher(string path, bool useEma, Device device)
    {
        string sha;
        try
        {
            using var file = File.OpenRead(path);
            sha = Convert.ToHexStringLower(SHA256.HashData(file));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot be read: " + e.Message, e);
        }
        using var reader = CheckpointReader.Open(path);
        var model = reader.LoadModel();
        try
        {
            if (useEma && reader.HasEma) reader.LoadEmaInto(model);
            model.to(device).eval();
            foreach (var p in model.parameters()) p.requires_grad = false;
            var diffusion = GaussianDiffusion.FromOptions(reader.Config.Diffusion);
            return new TeacherModel(model, diffusion, reader.Config, reader.Manifest, sha);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A student of the teacher's architecture with its weights, a fresh Adam and an EMA starting at those weights.
    /// </summary>
    private (UNet, FlatAdam, ExponentialMovingAverage) StudentFrom(UNet teacher)
    {
        var student = new UNet(StudentConfig.Model);
        try
        {
            student.to(Device);
            CopyWeights(teacher, student);
            var adam = new FlatAdam(student.parameters(), Options.Lr);
            return (student, adam, new ExponentialMovingAverage(student, Options.EmaDecay));
        }
        catch
        {
            student.Dispose();
            throw;
        }
    }

    private static void CopyWeights(UNet from, UNet to)
    {
        using var noGrad = no_grad();
        var source = from.state_dict();
        foreach (var (name, tensor) in to.state_dict())
            tensor.copy_(source[name]);
    }

    /// <summary>
    /// Ends the finished round and starts the next: <paramref name="teacherPath"/> (the student
    /// <see cref="SaveStudent"/> just wrote) teaches, its weights start the new student, with a fresh Adam and EMA.
    /// </summary>
    public void NextRound(string teacherPath)
    {
        if (!RoundFinished)
            throw new InvalidOperationException($"round {Round} has {Options.StepsPerRound - StepInRound} steps to go");
        if (Round >= Rounds) throw new InvalidOperationException("the last round is done");
        var teacher = LoadTeacher(teacherPath, useEma: true, Device);
        if (teacher.Manifest.Distilled?.Timesteps.SequenceEqual(_target.StudentTimesteps) != true)
        {
            teacher.Model.Dispose();
            throw new CheckpointException(teacherPath,
                $"is not the student of round {Round} (its grid is not {string.Join('/', _target.StudentTimesteps)})");
        }
        _adam.Dispose();
        _ema.Dispose();
        _student.Dispose();
        _teacher.Dispose();
        (_teacher, _teacherDiffusion, TeacherSha256) = (teacher.Model, teacher.Diffusion, teacher.Sha256);
        _teacherGuidance = 0; // the student's conditional output already is the guided teacher's
        Round++;
        StepInRound = 0;
        _target = TargetOfRound(Round);
        (_student, _adam, _ema) = StudentFrom(_teacher);
    }

    /// <summary>
    /// ε of the round's teacher for images with <paramref name="labels"/> (null label where dropped): the guided (1 +
    /// w)·ε(y) − w·ε(∅) (Ho &amp; Salimans 2022, eq. 6) in round 1, the previous student's output after.
    /// </summary>
    public NoisePredictor TeacherFor(Tensor? labels)
    {
        DenoisingNetwork network = (x, t) => _teacher.forward(x, t, labels);
        if (labels is null || _teacherGuidance == 0) return _teacherDiffusion.AsEpsPredictor(network);
        return ClassifierFreeGuidance.Guided(_teacher.forward, _teacher.NullLabel, labels, _teacherGuidance,
            _teacherDiffusion.EpsFromOutput);
    }

    /// <summary>
    /// The student's loss on x_0 [B, C, H, W] for its steps <paramref name="index"/> (int64 [B] in 0..N−1) and noise ε:
    /// MSE between its output and the target (ε̃, x̃ or ṽ, as it predicts) implied by x̃ (Algorithm 2).
    /// </summary>
    public Tensor Loss(Tensor x0, Tensor? labels, Tensor index, Tensor noise)
    {
        var z = _target.Noised(x0, noise, index);
        var t = _target.Timesteps(index);
        Tensor target;
        using (no_grad())
        {
            var xTilde = _target.X0Target(z, _target.TeacherTwoSteps(TeacherFor(labels), z, index), index);
            target = StudentDiffusion.TargetFor(xTilde, t, StudentDiffusion.PredictEpsFromX0(z, t, xTilde));
        }
        return nn.functional.mse_loss(_student.forward(z, t, labels), target);
    }

    /// <summary>
    /// Trains the current round until it is finished or <paramref name="cancel"/> is set (checked before every step).
    /// <paramref name="onStep"/> sees each step (epoch = round, step in epoch = step in round). Null when there was
    /// nothing to do.
    /// </summary>
    public EpochReport? TrainRound(ImageDataset data, Action<StepReport>? onStep = null,
        CancellationToken cancel = default, long? saveEvery = null, Action? save = null)
    {
        if (RoundFinished) return null;
        if (_student.IsConditional && data.Labels is null)
            throw new TrainingException($"the class-conditional teacher needs labels, but {data.Description} has none");
        var sampler = new BatchSampler(data.Count, Options.BatchSize, Options.Seed);
        long perEpoch = sampler.BatchesPerEpoch;
        var schedule = LearningRates;
        _student.train();
        long rssStart = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        double lossSum = 0;
        long steps = 0, images = 0;
        while (!RoundFinished && !cancel.IsCancellationRequested)
        {
            long epoch = Step / perEpoch + 1;
            foreach (var (batch, indices) in sampler.Batches(epoch, (int)(Step % perEpoch)))
            {
                if (RoundFinished || cancel.IsCancellationRequested) break;
                using var scope = NewDisposeScope();
                Tensor? flip = null;
                if (StudentConfig.Dataset.RandomFlip)
                {
                    using var flips = sampler.FlipGenerator(epoch, batch);
                    flip = ImageDataset.DrawFlips(flips, indices.shape[0]);
                }
                var x0 = data.BatchWithFlips(indices, Device, flip);
                var labels = _student.IsConditional ? DropLabels(data.BatchLabels(indices)!).to(Device) : null;
                float loss = TrainStep(x0, labels, schedule.At(StepInRound));
                images += indices.shape[0];
                lossSum += loss;
                steps++;
                double rate = images / clock.Elapsed.TotalSeconds;
                onStep?.Invoke(new StepReport(Round, Step, StepInRound, Options.StepsPerRound, loss, rate));
                if (save is not null && saveEvery is { } every && StepInRound % every == 0 && !RoundFinished) save();
            }
        }
        return new EpochReport(Round, Step, steps, steps > 0 ? lossSum / steps : double.NaN, clock.Elapsed.TotalSeconds,
            images / clock.Elapsed.TotalSeconds, rssStart, Environment.WorkingSet, RoundFinished);
    }

    /// <summary>
    /// One optimizer step on a batch (already on <see cref="Device"/>): draws i and ε, the loss, Adam at
    /// <paramref name="lr"/>, the EMA.
    /// </summary>
    public float TrainStep(Tensor x0, Tensor? labels, double lr)
    {
        using var scope = NewDisposeScope();
        var index = randint(0, _target.StudentSteps, [x0.shape[0]], dtype: int64, generator: Generator).to(Device);
        var noise = randn(x0.shape, dtype: x0.dtype, generator: Generator).to(Device);
        return TrainStep(x0, labels, index, noise, lr);
    }

    /// <summary>
    /// One optimizer step for given student steps <paramref name="index"/> and noise ε: <see cref="Loss"/>, Adam at
    /// <paramref name="lr"/>, the EMA.
    /// </summary>
    public float TrainStep(Tensor x0, Tensor? labels, Tensor index, Tensor noise, double lr)
    {
        using var scope = NewDisposeScope();
        var loss = Loss(x0, labels, index, noise);
        loss.backward();
        var gradients = _adam.Gradients();
        float value = loss.item<float>();
        if (!float.IsFinite(value) || !gradients.isfinite().all().item<bool>())
        {
            var problem = float.IsFinite(value) ? "a gradient became non-finite" : $"loss became {value}";
            throw new TrainingException($"{problem} at step {Step + 1} (round {Round}); its update was not applied, " +
                "distillation stopped. Try a lower --lr.");
        }
        _adam.Options.LearningRate = lr;
        _adam.Step(gradients);
        _ema.Update(_adam.Weights, StepInRound);
        _adam.ZeroGrad();
        StepInRound++;
        Step++;
        return value;
    }

    /// <summary>
    /// The null label with probability <see cref="DistillationOptions.LabelDropout"/>, drawn from
    /// <see cref="Generator"/>.
    /// </summary>
    private Tensor DropLabels(Tensor labels)
    {
        if (Options.LabelDropout <= 0) return labels;
        var drop = rand(labels.shape[0], generator: Generator) < Options.LabelDropout;
        return where(drop, full_like(labels, _student.NullLabel), labels);
    }

    /// <summary>The run's state as the manifest stores it.</summary>
    public DistillationState State => new()
    {
        Options = Options,
        Round = Round,
        Rounds = Rounds,
        StepInRound = StepInRound,
        TeacherTimesteps = _target.TeacherTimesteps.ToArray(),
        TeacherSha256 = TeacherSha256,
        OriginalTeacherSha256 = OriginalTeacherSha256,
        OriginalTeacherStep = OriginalTeacherStep,
    };

    /// <summary>
    /// Saves the student, Adam and RNG state, its EMA and the run's state (atomically), to resume from.
    /// </summary>
    public void Save(string path) =>
        Checkpoint.Save(path, _student, StudentConfig, Round, Step, StepInRound,
            new Checkpoint.TrainingState(_adam.Optimizer, Generator), _ema.Shadow, distilled: Grid,
            distillation: State);

    /// <summary>
    /// Saves the round's student as a distilled checkpoint (weights and EMA, its grid; no training state): what <c>ddpm
    /// sample</c>, <c>eval</c> and <c>serve</c> load, and the next round's teacher.
    /// </summary>
    public void SaveStudent(string path) =>
        Checkpoint.Save(path, _student, StudentConfig, Round, Step, StepInRound, ema: _ema.Shadow, distilled: Grid,
            distillation: State);

    public void Dispose()
    {
        _adam.Dispose();
        _ema.Dispose();
        _student.Dispose();
        _teacher.Dispose();
        Generator.Dispose();
    }
}
