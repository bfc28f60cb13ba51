using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace Ddpm.Imaging;

/// <summary>
/// Assembles PNG frames of equal size (as produced by <see cref="ImageGrid.ToPng"/>) into one animated PNG (APNG),
/// the seed's "from pure noise to an image" story. Each frame's IDAT data is reused as-is (fdAT for frames after the
/// first); only the acTL/fcTL control chunks are ours.
/// </summary>
internal static class AnimatedPng
{
    private static readonly byte[] Signature = [137, 80, 78, 71, 13, 10, 26, 10];

    /// <summary>An APNG that shows each frame for <paramref name="frameMilliseconds"/> (the last one 3× longer),
    /// looping forever.</summary>
    public static byte[] Assemble(IReadOnlyList<byte[]> pngFrames, int frameMilliseconds = 40)
    {
        if (pngFrames.Count == 0) throw new ArgumentException("an animation needs at least one frame", nameof(pngFrames));
        var first = Chunks(pngFrames[0]);
        var ihdr = first.First(c => c.Type == "IHDR").Data;
        uint width = BinaryPrimitives.ReadUInt32BigEndian(ihdr), height = BinaryPrimitives.ReadUInt32BigEndian(ihdr.AsSpan(4));

        using var output = new MemoryStream();
        output.Write(Signature);
        WriteChunk(output, "IHDR", ihdr);
        var actl = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(actl, (uint)pngFrames.Count);
        BinaryPrimitives.WriteUInt32BigEndian(actl.AsSpan(4), 0); // loop forever
        WriteChunk(output, "acTL", actl);

        uint sequence = 0;
        for (int f = 0; f < pngFrames.Count; f++)
        {
            var chunks = f == 0 ? first : Chunks(pngFrames[f]);
            var h = chunks.First(c => c.Type == "IHDR").Data;
            if (!h.AsSpan().SequenceEqual(ihdr))
                throw new ArgumentException($"frame {f} differs in size or pixel format from frame 0", nameof(pngFrames));
            var fctl = new byte[26];
            BinaryPrimitives.WriteUInt32BigEndian(fctl, sequence++);
            BinaryPrimitives.WriteUInt32BigEndian(fctl.AsSpan(4), width);
            BinaryPrimitives.WriteUInt32BigEndian(fctl.AsSpan(8), height);
            // x/y offsets 0; delay = num/den seconds.
            BinaryPrimitives.WriteUInt16BigEndian(fctl.AsSpan(20), (ushort)(f == pngFrames.Count - 1 ? frameMilliseconds * 3 : frameMilliseconds));
            BinaryPrimitives.WriteUInt16BigEndian(fctl.AsSpan(22), 1000);
            WriteChunk(output, "fcTL", fctl);
            foreach (var c in chunks.Where(c => c.Type == "IDAT"))
            {
                if (f == 0)
                {
                    WriteChunk(output, "IDAT", c.Data);
                    continue;
                }
                var fdat = new byte[c.Data.Length + 4];
                BinaryPrimitives.WriteUInt32BigEndian(fdat, sequence++);
                c.Data.CopyTo(fdat, 4);
                WriteChunk(output, "fdAT", fdat);
            }
        }
        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    /// <summary>The chunks of a PNG file (type, data), checked for signature and length.</summary>
    public static List<(string Type, byte[] Data)> Chunks(byte[] png)
    {
        if (png.Length < 8 || !png.AsSpan(0, 8).SequenceEqual(Signature)) throw new InvalidDataException("not a PNG file");
        var list = new List<(string, byte[])>();
        int at = 8;
        while (at + 12 <= png.Length)
        {
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
            if (length < 0 || at + 12 + length > png.Length) throw new InvalidDataException("truncated PNG chunk");
            var type = Encoding.ASCII.GetString(png, at + 4, 4);
            list.Add((type, png.AsSpan(at + 8, length).ToArray()));
            at += 12 + length;
            if (type == "IEND") break;
        }
        return list;
    }

    private static void WriteChunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(len, (uint)data.Length);
        s.Write(len);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(data);
        var crc = new Crc32();
        crc.Append(typeBytes);
        crc.Append(data);
        Span<byte> c = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(c, crc.GetCurrentHashAsUInt32());
        s.Write(c);
    }
}
