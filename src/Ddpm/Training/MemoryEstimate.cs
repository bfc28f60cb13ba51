using System.Globalization;
using Ddpm.Configuration;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// A rough estimate, from the config alone (before anything is allocated), of what training needs: parameters × 4 bytes
/// × (weights + gradients + Adam's two moments, + an EMA copy) plus activations kept for backward per image × batch.
/// Activations count, per U-Net layer at its resolution n = H·W, about 9·C·n floats for a ResNet block and 7·C·n +
/// 2·heads·n² for self-attention (the scores and their softmax), doubled for the backward pass's working set. Meant to
/// refuse configs that cannot fit by far, not to predict usage to the megabyte.
/// </summary>
public sealed record MemoryEstimate(long Parameters, long StateBytes, long ActivationBytesPerImage, int BatchSize)
{
    public long TotalBytes => StateBytes + ActivationBytesPerImage * BatchSize;

    public static MemoryEstimate For(DdpmConfig config)
    {
        var m = config.Model;
        long parameters = EstimateParameters(m);
        int copies = 4 + (config.Train.EmaDecay > 0 ? 1 : 0);
        double activations = EstimateActivationFloats(m) * 4.0 * 2.0;
        return new MemoryEstimate(parameters, parameters * 4 * copies, (long)Math.Min(activations, long.MaxValue / 4.0 / Math.Max(1, config.Train.BatchSize)),
            config.Train.BatchSize);
    }

    /// <summary>
    /// Throws <see cref="TrainingException"/> when the estimate exceeds the memory available on
    /// <paramref name="device"/> (on the CPU: MemAvailable of /proc/meminfo). Devices whose free memory is unknown are
    /// not checked here; a CUDA out-of-memory error is reported by the trainer instead.
    /// </summary>
    public static MemoryEstimate EnsureFits(DdpmConfig config, Device device)
    {
        var estimate = For(config);
        if (device.type != TorchSharp.DeviceType.CPU) return estimate;
        var available = AvailableCpuBytes();
        if (available is { } free && estimate.TotalBytes > free)
            throw new TrainingException(
                $"the config needs an estimated {Gib(estimate.TotalBytes)} ({estimate.Parameters:N0} parameters × 4 B × weights, gradients and Adam's moments = {Gib(estimate.StateBytes)}, " +
                $"plus about {Gib(estimate.ActivationBytesPerImage)} of activations per image × batch {estimate.BatchSize}) but only {Gib(free)} of memory is available. " +
                "Use a smaller train_params.batch_size, im_size or model.");
        return estimate;
    }

    /// <summary>MemAvailable from /proc/meminfo in bytes, or null where unknown.</summary>
    public static long? AvailableCpuBytes()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    return long.Parse(parts[1], CultureInfo.InvariantCulture) * 1024;
                }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    private static string Gib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB");

    /// <summary>Weights of the reference U-Net's layers (convolutions, norms, time projections, attention), by
    /// block.</summary>
    private static long EstimateParameters(UNetOptions m)
    {
        long temb = m.TimeEmbDim;
        long total = 2 * (temb * temb + temb) + 9L * m.ImChannels * m.DownChannels[0] + 9L * UNetOptions.OutChannels * m.ImChannels + 2 * UNetOptions.OutChannels;
        if (m.NumClasses > 0) total += (m.NumClasses + 1L) * temb;
        long Layer(long cin, long c, bool attention) =>
            2 * cin + 9 * cin * c + c + temb * c + c + 2 * c + 9 * c * c + c + cin * c + c + (attention ? 2 * c + 4 * c * c + 4 * c : 0);
        for (int i = 0; i < m.DownChannels.Count - 1; i++)
        {
            long cin = m.DownChannels[i], c = m.DownChannels[i + 1];
            for (int l = 0; l < m.NumDownLayers; l++) total += Layer(l == 0 ? cin : c, c, true);
            if (m.DownSample[i]) total += 16 * c * c + c;
        }
        for (int i = 0; i < m.MidChannels.Count - 1; i++)
        {
            long cin = m.MidChannels[i], c = m.MidChannels[i + 1];
            total += Layer(cin, c, false);
            for (int l = 0; l < m.NumMidLayers; l++) total += Layer(c, c, true);
        }
        for (int i = m.DownChannels.Count - 2; i >= 0; i--)
        {
            long cin = 2L * m.DownChannels[i], c = i != 0 ? m.DownChannels[i - 1] : UNetOptions.OutChannels;
            total += 16 * (cin / 2) * (cin / 2) + cin / 2;
            for (int l = 0; l < m.NumUpLayers; l++) total += Layer(l == 0 ? cin : c, c, true);
        }
        return total;
    }

    private static double EstimateActivationFloats(UNetOptions m)
    {
        double Layer(double c, double n, bool attention) => 9 * c * n + (attention ? 7 * c * n + 2.0 * m.NumHeads * n * n : 0);
        double size = m.ImSize, total = 2.0 * m.DownChannels[0] * size * size;
        var sizes = new List<double>();
        for (int i = 0; i < m.DownChannels.Count - 1; i++)
        {
            sizes.Add(size);
            double n = size * size, c = m.DownChannels[i + 1];
            total += m.NumDownLayers * Layer(c, n, true);
            if (m.DownSample[i]) size /= 2;
        }
        for (int i = 0; i < m.MidChannels.Count - 1; i++)
            total += (m.NumMidLayers + 1) * Layer(m.MidChannels[i + 1], size * size, m.NumMidLayers > 0);
        for (int i = m.DownChannels.Count - 2; i >= 0; i--)
        {
            double n = sizes[i] * sizes[i], c = 2.0 * m.DownChannels[i];
            total += m.NumUpLayers * Layer(c, n, true);
        }
        return total;
    }
}
