using System.Globalization;
using System.Text;
using Ddpm.Configuration;
using Ddpm.Data;

namespace Ddpm.Distributed;

/// <summary>
/// What every rank of a data-parallel run must see alike before the first step (collective): the number of training
/// images, a checksum of them and their labels, and the resolved config. Ranks launched with other working folders
/// (<c>mpirun -wdir</c>) or other files can load other data: different sizes give different numbers of steps per epoch
/// (a deadlock), and different images of one size train silently on another data set while the weights stay identical.
/// </summary>
public static class RankAgreement
{
    /// <summary>Compares the three across <paramref name="ranks"/>; the same verdict on every rank.</summary>
    /// <exception cref="DistributedException">They differ: the message names the ranks that differ from rank 0 and what
    /// each sees.</exception>
    public static void Check(ICommunicator ranks, ImageDataset data, DdpmConfig config)
    {
        ulong images = WeightChecksum.Of(data.Images), labels = data.Labels is null ? 0 : WeightChecksum.Of(data.Labels);
        // Each comparison is a collective every rank makes, whatever an earlier one found, so the verdicts agree.
        var problems = new[]
        {
            Compare(ranks, "the number of training images", data.Count, v => v.ToString("N0", CultureInfo.InvariantCulture)),
            Compare(ranks, "a checksum of the training images", unchecked((long)(images ^ (labels * 31))), Hex),
            Compare(ranks, "the resolved config (checksum of its YAML)", unchecked((long)Checksum(config.ToYaml())), Hex),
        }.OfType<string>().ToList();
        if (problems.Count > 0)
            throw new DistributedException($"the ranks do not train on the same thing: {string.Join("; ", problems)}. Every rank must " +
                $"see the same data set and config (check each rank's working folder, -wdir, and the paths in the config); {data.Description} here");
    }

    private static string? Compare(ICommunicator ranks, string what, long value, Func<long, string> show)
    {
        var all = ranks.AllGather(value);
        var differ = Enumerable.Range(0, all.Length).Where(r => all[r] != all[0]).ToList();
        if (differ.Count == 0) return null;
        return $"rank {string.Join(", ", differ)} differ{(differ.Count == 1 ? "s" : "")} from rank 0 in {what} (" +
            string.Join(", ", all.Select((v, r) => $"rank {r}: {show(v)}")) + ")";
    }

    private static string Hex(long value) => unchecked((ulong)value).ToString("x16", CultureInfo.InvariantCulture);

    private static ulong Checksum(string text)
    {
        using var bytes = TorchSharp.torch.tensor(Encoding.UTF8.GetBytes(text));
        return WeightChecksum.Of(bytes);
    }
}
