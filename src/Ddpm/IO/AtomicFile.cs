using System.Text;

namespace Ddpm.IO;

/// <summary>
/// The one way this library writes a file: into a temporary sibling (<c>&lt;name&gt;.tmp-&lt;pid&gt;</c>, in the same folder
/// so the rename never crosses file systems), flushed to disk, renamed over the target, then the folder fsynced so that the
/// rename itself survives a power loss. A reader sees the old file or the new one, never part of one; when anything fails the
/// temporary file is removed, the exception propagates and whatever was at the path is untouched.
/// </summary>
internal static class AtomicFile
{
    /// <summary>What separates a target's name from the writing process's id in its temporary sibling's name.</summary>
    public const string TempMarker = ".tmp-";

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>.</summary>
    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no byte-order mark, as <see cref="File.WriteAllText(string, string)"/>).</summary>
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, Encoding.UTF8.GetBytes(text));

    /// <summary>Writes whatever <paramref name="write"/> puts into the stream it is given (it need not flush or close it).</summary>
    public static void Write(string path, Action<Stream> write) => Replace(path, temp =>
    {
        using var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None);
        write(file);
        file.Flush(flushToDisk: true);
    });

    /// <summary>
    /// Puts a file made by <paramref name="create"/> at <paramref name="path"/>: <paramref name="create"/> gets the temporary
    /// path and must leave a complete file there, flushed to disk (or a hard link to one); it is then renamed over
    /// <paramref name="path"/> and the folder is fsynced.
    /// </summary>
    public static void Replace(string path, Action<string> create)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        var temp = full + TempMarker + Environment.ProcessId;
        try
        {
            create(temp);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        FileDurability.FsyncDirectory(folder);
    }

    /// <summary>Deletes <paramref name="path"/> if it can; a file that cannot be deleted is left (best effort, never throws for I/O).</summary>
    public static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
