using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// Joins the MPI job this process was launched into, when it was (<see cref="MpiLaunch.Detect()"/>); otherwise does
/// nothing, so a plain process loads no MPI and runs exactly as before.
/// </summary>
public static class DistributedJob
{
    /// <summary>
    /// Under <c>mpirun</c>: gives each rank its share of the machine's cores as libtorch threads (unless
    /// <c>OMP_NUM_THREADS</c> is set), one GPU per local rank (<c>CUDA_VISIBLE_DEVICES</c> narrowed to the local rank's
    /// entry, before CUDA starts), and initialises MPI. Returns the communicator, or null when not launched by MPI.
    /// </summary>
    /// <exception cref="DistributedException">MPI is missing or fails to start, or there are fewer GPUs listed than
    /// local ranks.</exception>
    public static MpiCommunicator? Join()
    {
        if (MpiCommunicator.Current is { } current) return current;
        var launch = MpiLaunch.Detect();
        if (launch is null) return null;
        NarrowVisibleDevices(launch);
        var communicator = MpiCommunicator.Start(launch);
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMP_NUM_THREADS")))
            set_num_threads(launch.ThreadsPerRank(Environment.ProcessorCount));
        return communicator;
    }

    /// <summary>
    /// One GPU per local rank: CUDA_VISIBLE_DEVICES becomes the local rank's entry of the list it held (or the local
    /// rank's number when unset), so each rank's <c>cuda:0</c> is its own GPU. Harmless on a machine without GPUs.
    /// </summary>
    private static void NarrowVisibleDevices(MpiLaunch launch)
    {
        var visible = Environment.GetEnvironmentVariable("CUDA_VISIBLE_DEVICES");
        string mine;
        if (string.IsNullOrWhiteSpace(visible)) mine = launch.LocalRank.ToString(System.Globalization.CultureInfo.InvariantCulture);
        else
        {
            var list = visible.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
            if (list.Length == 1 && launch.LocalSize == 1) return;
            if (launch.LocalRank >= list.Length)
                throw new DistributedException($"CUDA_VISIBLE_DEVICES={visible} lists {list.Length} GPUs for {launch.LocalSize} ranks on this machine (one GPU per rank)");
            mine = list[launch.LocalRank];
        }
        NativeLoader.SetNativeEnvironment("CUDA_VISIBLE_DEVICES", mine);
        Environment.SetEnvironmentVariable("CUDA_VISIBLE_DEVICES", mine);
    }
}
