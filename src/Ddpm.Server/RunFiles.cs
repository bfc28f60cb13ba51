using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Ddpm.IO;

namespace Ddpm.Server;

/// <summary>New lines of a run's <c>loss.csv</c> from a byte offset: the steps and losses, and where to
/// continue.</summary>
public sealed record LossChunk(long Offset, bool More, IReadOnlyList<long> Steps, IReadOnlyList<double?> Losses);

/// <summary>A CSV file as column names and numeric rows (non-numbers and non-finite values are null).</summary>
public sealed record CsvTable(IReadOnlyList<string> Columns, IReadOnlyList<double?[]> Rows);

/// <summary>
/// Reads what <c>ddpm train</c> and <c>ddpm eval</c> write into a run folder, tolerating files being appended
/// meanwhile; a FIFO or device in place of a file is an <see cref="IOException"/>, never a read that waits forever.
/// </summary>
public static class RunFiles
{
    public const int MaxChunkBytes = 1 << 20, MaxTextBytes = 1 << 20;

    /// <summary>
    /// The complete lines of <paramref name="path"/> (<c>step,loss</c>) after byte <paramref name="offset"/>, at most
    /// <see cref="MaxChunkBytes"/> of them. An offset beyond the end (the file was replaced) starts again from 0.
    /// </summary>
    public static LossChunk ReadLoss(string path, long offset)
    {
        using var f = RegularFile.OpenRead(path);
        if (offset < 0 || offset > f.Length) offset = 0;
        f.Seek(offset, SeekOrigin.Begin);
        var buffer = new byte[(int)Math.Min(MaxChunkBytes, f.Length - offset)];
        int read = f.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        int end = Array.LastIndexOf(buffer, (byte)'\n', Math.Max(0, read - 1), read) + 1; // up to the last complete line
        var steps = new List<long>();
        var losses = new List<double?>();
        foreach (var line in Encoding.UTF8.GetString(buffer, 0, end).Split('\n'))
        {
            var comma = line.IndexOf(',');
            if (comma < 0 || !long.TryParse(line.AsSpan(0, comma), NumberStyles.Integer, CultureInfo.InvariantCulture, out var step)) continue;
            steps.Add(step);
            losses.Add(Number(line[(comma + 1)..]));
        }
        long next = offset + end;
        return new LossChunk(next, next < f.Length, steps, losses);
    }

    /// <summary>A CSV with a header line, e.g. <c>train_log.csv</c>, read whole (at most
    /// <see cref="MaxTextBytes"/>).</summary>
    public static CsvTable ReadTable(string path)
    {
        var lines = ReadText(path).Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (lines.Length == 0) return new CsvTable([], []);
        var rows = lines.Skip(1).Select(l => l.Split(',').Select(Number).ToArray()).ToList();
        return new CsvTable(lines[0].Split(','), rows);
    }

    /// <summary>A text file, or its first <see cref="MaxTextBytes"/> bytes.</summary>
    public static string ReadText(string path)
    {
        using var f = RegularFile.OpenRead(path);
        var buffer = new byte[(int)Math.Min(MaxTextBytes, f.Length)];
        int read = f.ReadAtLeast(buffer, buffer.Length, throwOnEndOfStream: false);
        return Encoding.UTF8.GetString(buffer, 0, read);
    }

    /// <summary>A JSON document (e.g. <c>eval.json</c>), or null when it does not parse.</summary>
    public static JsonNode? ReadJson(string path)
    {
        try { return JsonNode.Parse(ReadText(path)); }
        catch (System.Text.Json.JsonException) { return null; }
    }

    private static double? Number(string s) =>
        double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var v) && double.IsFinite(v) ? v : null;
}
