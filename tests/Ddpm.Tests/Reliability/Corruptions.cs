using System.Buffers.Binary;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Deterministic random corruptions of a valid file: bit flips, truncations, overwritten runs, inserted and deleted
/// bytes, and "huge declared size" edits (a 4- or 8-byte field set to a very large value) at the given offsets.
/// </summary>
internal static class Corruptions
{
    public static IEnumerable<(string Kind, byte[] Bytes)> Of(byte[] valid, int count, int seed, IReadOnlyList<int>? sizeFieldOffsets = null)
    {
        var rng = new Random(seed);
        for (int i = 0; i < count; i++)
        {
            var b = (byte[])valid.Clone();
            int kind = rng.Next(sizeFieldOffsets is { Count: > 0 } ? 6 : 5);
            switch (kind)
            {
                case 0:
                    int flips = 1 + rng.Next(8);
                    for (int f = 0; f < flips; f++) b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                    yield return ($"#{i} {flips} bit flips", b);
                    break;
                case 1:
                    int length = rng.Next(b.Length);
                    yield return ($"#{i} truncated to {length}", b[..length]);
                    break;
                case 2:
                    int at = rng.Next(b.Length), run = Math.Min(1 + rng.Next(16), b.Length - at);
                    byte fill = rng.Next(3) switch { 0 => 0x00, 1 => 0xFF, _ => (byte)rng.Next(256) };
                    b.AsSpan(at, run).Fill(fill);
                    yield return ($"#{i} {run} bytes at {at} set to 0x{fill:X2}", b);
                    break;
                case 3:
                    int pos = rng.Next(b.Length + 1);
                    var extra = new byte[1 + rng.Next(16)];
                    rng.NextBytes(extra);
                    yield return ($"#{i} {extra.Length} bytes inserted at {pos}", [.. b[..pos], .. extra, .. b[pos..]]);
                    break;
                case 4:
                    int from = rng.Next(b.Length), cut = Math.Min(1 + rng.Next(16), b.Length - from);
                    yield return ($"#{i} {cut} bytes deleted at {from}", [.. b[..from], .. b[(from + cut)..]]);
                    break;
                default:
                    int field = sizeFieldOffsets![rng.Next(sizeFieldOffsets.Count)];
                    uint huge = rng.Next(3) switch { 0 => 0x7FFFFFFF, 1 => 0xFFFFFFFF, _ => (uint)rng.Next(1 << 20, int.MaxValue) };
                    if (field + 4 <= b.Length) BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(field), huge);
                    yield return ($"#{i} size field at {field} set to {huge}", b);
                    break;
            }
        }
    }

    /// <summary>Runs <paramref name="load"/>; only <typeparamref name="TExpected"/> or success may come out.</summary>
    public static (int Rejected, int Loaded) Check<TExpected>(IEnumerable<(string Kind, byte[] Bytes)> cases, Action<byte[]> load)
        where TExpected : Exception
    {
        int rejected = 0, loaded = 0;
        foreach (var (kind, bytes) in cases)
        {
            try
            {
                load(bytes);
                loaded++;
            }
            catch (TExpected)
            {
                rejected++;
            }
            catch (Exception e)
            {
                throw new Xunit.Sdk.XunitException($"corruption {kind} escaped as {e.GetType().Name} instead of {typeof(TExpected).Name}: {e}");
            }
        }
        return (rejected, loaded);
    }
}
