namespace Ddpm.IO;

/// <summary>
/// Reads zip entries without trusting their sizes: an entry whose declared (uncompressed) size exceeds a limit is
/// refused before inflating, and inflating stops one byte past the declared size, so an entry that inflates to more
/// than it declares (a zip bomb) costs at most its declared size plus one byte.
/// </summary>
internal static class BoundedZip
{
    /// <summary>The entry's bytes; <see cref="InvalidDataException"/> naming it when it is too large or lies about its
    /// size.</summary>
    public static byte[] ReadAll(System.IO.Compression.ZipArchiveEntry entry, long maxBytes)
    {
        long declared = entry.Length;
        if (declared > maxBytes)
            throw new InvalidDataException($"entry {entry.FullName} declares {declared:N0} bytes, more than the {maxBytes:N0} it may hold");
        var bytes = new byte[declared];
        using var s = entry.Open();
        int read = s.ReadAtLeast(bytes, bytes.Length, throwOnEndOfStream: false);
        if (read < declared)
            throw new InvalidDataException($"entry {entry.FullName} inflates to {read:N0} bytes but declares {declared:N0}");
        if (s.ReadByte() >= 0)
            throw new InvalidDataException($"entry {entry.FullName} inflates to more than the {declared:N0} bytes it declares");
        return bytes;
    }

    /// <summary>Inflates every entry to check its real size against its declared one (and the limit), keeping
    /// nothing.</summary>
    public static void CheckSizes(System.IO.Compression.ZipArchive zip, long maxEntryBytes)
    {
        var buffer = new byte[81920];
        foreach (var entry in zip.Entries)
        {
            if (entry.Length > maxEntryBytes)
                throw new InvalidDataException($"entry {entry.FullName} declares {entry.Length:N0} bytes, more than the {maxEntryBytes:N0} it may hold");
            using var s = entry.Open();
            long total = 0;
            int n;
            while ((n = s.Read(buffer)) > 0)
            {
                total += n;
                if (total > entry.Length)
                    throw new InvalidDataException($"entry {entry.FullName} inflates to more than the {entry.Length:N0} bytes it declares");
            }
            if (total != entry.Length)
                throw new InvalidDataException($"entry {entry.FullName} inflates to {total:N0} bytes but declares {entry.Length:N0}");
        }
    }
}
