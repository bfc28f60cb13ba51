namespace Ddpm.Distributed;

/// <summary>
/// Where this process sits in a job started by Open MPI's <c>mpirun</c> (or <c>mpiexec</c>), read from the variables
/// the launcher sets for every rank (<c>OMPI_COMM_WORLD_SIZE</c>, <c>_RANK</c>, <c>_LOCAL_RANK</c>,
/// <c>_LOCAL_SIZE</c>). A process started without them is not part of a job: nothing distributed is loaded and it runs
/// as a single process.
/// </summary>
public sealed record MpiLaunch(int Rank, int Size, int LocalRank, int LocalSize)
{
    /// <summary>The launch this process belongs to, or null when it was not started by Open MPI.</summary>
    /// <exception cref="DistributedException">another MPI's launcher (MPICH, Intel MPI) started it, or a variable is
    /// malformed.</exception>
    public static MpiLaunch? Detect() => Detect(Environment.GetEnvironmentVariable);

    /// <summary>As <see cref="Detect()"/>, reading variables through <paramref name="variable"/> (for tests).</summary>
    public static MpiLaunch? Detect(Func<string, string?> variable)
    {
        if (variable("OMPI_COMM_WORLD_SIZE") is not { } sizeText)
        {
            // MPICH's Hydra and Intel MPI set PMI_SIZE; their handles are integers, not Open MPI's exported objects.
            if (variable("PMI_SIZE") is { } other && other != "1")
                throw new DistributedException($"launched by an MPI other than Open MPI (PMI_SIZE={other}, no OMPI_COMM_WORLD_SIZE); " +
                    "ddpm's MPI binding is for Open MPI: start it with Open MPI's mpirun");
            return null;
        }
        int size = Parse("OMPI_COMM_WORLD_SIZE", sizeText, min: 1);
        int rank = Parse("OMPI_COMM_WORLD_RANK", variable("OMPI_COMM_WORLD_RANK"), min: 0);
        int localRank = Parse("OMPI_COMM_WORLD_LOCAL_RANK", variable("OMPI_COMM_WORLD_LOCAL_RANK") ?? rank.ToString(), min: 0);
        int localSize = Parse("OMPI_COMM_WORLD_LOCAL_SIZE", variable("OMPI_COMM_WORLD_LOCAL_SIZE") ?? size.ToString(), min: 1);
        if (rank >= size) throw new DistributedException($"OMPI_COMM_WORLD_RANK={rank} is not below OMPI_COMM_WORLD_SIZE={size}");
        if (localRank >= localSize) throw new DistributedException($"OMPI_COMM_WORLD_LOCAL_RANK={localRank} is not below OMPI_COMM_WORLD_LOCAL_SIZE={localSize}");
        return new MpiLaunch(rank, size, localRank, localSize);
    }

    private static int Parse(string name, string? text, int min)
    {
        if (text is null) throw new DistributedException($"{name} is not set although OMPI_COMM_WORLD_SIZE is; was this process started by mpirun?");
        if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int value) || value < min)
            throw new DistributedException($"{name}='{text}' is not an integer >= {min}");
        return value;
    }

    /// <summary>
    /// libtorch threads per rank so that the ranks on one machine share its cores instead of each taking all of them:
    /// the cores this process may run on (its affinity, which mpirun may have narrowed by binding) divided by the ranks
    /// on this machine, at least 1.
    /// </summary>
    public int ThreadsPerRank(int processorCount) => Math.Max(1, processorCount / LocalSize);
}
