using System.Globalization;
using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// What a <see cref="Training.Trainer"/> needs to train data-parallel over the ranks of a communicator: each rank's
/// part of a global batch (<see cref="ShardOf"/>), the average of the gradient and the loss over the global batch after
/// backward (<see cref="Average"/>: MPI on CPU tensors; CUDA ones through host copies and MPI, or NCCL with
/// <c>DDPM_NCCL=1</c>), agreement on stopping (<see cref="AnyStop"/>), and a periodic check that the ranks' weights are
/// still bit-identical (<see cref="CheckWeights"/>). Every rank then takes the same Adam and EMA step from the same
/// numbers, so the weights stay identical without ever being sent.
/// </summary>
public sealed class DataParallel : IDisposable
{
    private readonly NcclAllReduce? _nccl;

    /// <summary>The ranks taking part.</summary>
    public ICommunicator Communicator { get; }
    /// <summary>Steps between weight comparisons across ranks (also compared at every epoch's start and end).</summary>
    public int CheckEvery { get; }
    public int Rank => Communicator.Rank;
    public int Size => Communicator.Size;
    /// <summary>Whether this rank writes logs, progress, checkpoints and images (rank 0).</summary>
    public bool IsRoot => Communicator.Rank == 0;
    /// <summary>The last step at which <see cref="CheckWeights"/> found every rank's weights identical, and their
    /// checksum.</summary>
    public (long Step, ulong Checksum)? LastAgreement { get; private set; }

    /// <summary>
    /// Data parallelism over <paramref name="communicator"/>; <paramref name="nccl"/> reduces CUDA gradients (null:
    /// MPI reduces them through host copies, as it reduces CPU ones). Takes ownership of <paramref name="nccl"/>.
    /// </summary>
    public DataParallel(ICommunicator communicator, int checkEvery = 100, NcclAllReduce? nccl = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(checkEvery);
        Communicator = communicator;
        CheckEvery = checkEvery;
        _nccl = nccl;
    }

    /// <summary>
    /// Data parallelism over <paramref name="communicator"/> for a model on <paramref name="device"/> (collective):
    /// checks that every rank trains on the same kind of device, and joins the ranks in NCCL for CUDA when
    /// <see cref="NcclAllReduce.Wanted"/> (<c>DDPM_NCCL=1</c>: opt-in, never run on a GPU yet).
    /// </summary>
    /// <exception cref="DistributedException">the devices differ, or NCCL (asked for) cannot start.</exception>
    public static DataParallel Create(ICommunicator communicator, Device device, int checkEvery = 100)
    {
        var kinds = communicator.AllGather((long)device.type);
        if (kinds.Any(k => k != kinds[0]))
            throw new DistributedException("the ranks would train on different kinds of device (" +
                string.Join(", ", kinds.Select((k, r) => $"rank {r}: {((TorchSharp.DeviceType)k).ToString().ToLowerInvariant()}")) +
                "); give --device explicitly, with one GPU per rank for cuda");
        var nccl = device.type == TorchSharp.DeviceType.CUDA && NcclAllReduce.Wanted ? NcclAllReduce.Create(communicator) : null;
        return new DataParallel(communicator, checkEvery, nccl);
    }

    /// <summary>This rank's part of a global batch of <paramref name="globalCount"/> examples.</summary>
    public Shard ShardOf(long globalCount) => Shard.Of(globalCount, Rank, Size);

    /// <summary>
    /// Turns this rank's gradient of its part's mean loss into the gradient of the global batch's mean loss (Algorithm
    /// 1 of Ho et al. 2020 over the union of the parts): ∇L = Σ_r (B_r / B) ∇L_r, the flat <paramref name="gradients"/>
    /// replaced in place; returns L = Σ_r (B_r / B) L_r, the global batch's loss, on every rank. A rank with an empty
    /// part contributes zeros.
    /// </summary>
    public Tensor Average(Tensor gradients, Tensor loss, Shard part)
    {
        double weight = part.Fraction;
        var total = loss.detach().to(float32).mul(weight).reshape(1).contiguous();
        gradients.mul_(weight);
        if (_nccl is not null && gradients.device_type == TorchSharp.DeviceType.CUDA)
        {
            _nccl.SumInPlace(gradients);
            _nccl.SumInPlace(total);
        }
        else
        {
            SumOnHost(gradients);
            SumOnHost(total);
        }
        return total.reshape([]);
    }

    /// <summary>MPI's sum of <paramref name="tensor"/> over the ranks in place (off the CPU: via a copy).</summary>
    private void SumOnHost(Tensor tensor)
    {
        if (tensor.device_type == TorchSharp.DeviceType.CPU)
        {
            Communicator.AllReduceSum(tensor);
            return;
        }
        using var host = tensor.cpu();
        Communicator.AllReduceSum(host);
        tensor.copy_(host);
    }

    /// <summary>Whether any rank asked to stop (e.g. got SIGTERM): all ranks stop before the same step, so none waits
    /// for a peer that left.</summary>
    public bool AnyStop(bool stop) => Communicator.Any(stop);

    /// <summary>
    /// Compares the checksum of <paramref name="weights"/> (<see cref="WeightChecksum"/>) across ranks; throws on every
    /// rank when they differ, naming the step and each rank's checksum.
    /// </summary>
    /// <exception cref="DistributedException">the ranks' weights are not bit-identical.</exception>
    public void CheckWeights(Tensor weights, long step)
    {
        var sums = Communicator.AllGather(unchecked((long)WeightChecksum.Of(weights)));
        if (sums.All(s => s == sums[0]))
        {
            LastAgreement = (step, unchecked((ulong)sums[0]));
            return;
        }
        var listed = string.Join(", ", sums.Select((s, r) => string.Create(CultureInfo.InvariantCulture, $"rank {r}: {unchecked((ulong)s):x16}")));
        throw new DistributedException($"the weights differ across ranks after step {step} ({listed}); the ranks diverged, " +
            "so training stopped (the last checkpoint was kept). All ranks must run the same build, config and checkpoint.");
    }

    public void Dispose() => _nccl?.Dispose();
}
