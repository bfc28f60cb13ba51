// MSBuild task (compiled by RoslynCodeTaskFactory, see Ddpm.Native.targets).
//
// TorchSharp 0.107.0's libLibTorchSharp.so lists the symbol version GLIBCXX_3.4.32 (libstdc++ of GCC 13+) as required,
// although only `_ZSt21ios_base_library_initv` carries it and no relocation references that symbol. On a system whose
// libstdc++ stops at 3.4.30/3.4.31 (Debian 12, Ubuntu 22.04) the loader refuses the library. Setting VER_FLG_WEAK on
// that one Vernaux entry of .gnu.version_r turns the hard requirement into a weak one and the library loads.
// The patch is idempotent and only applied when the libstdc++ this build runs against lacks the version
// (or when Force is set, for self-contained bundles that travel to unknown machines).
#nullable enable
using System;
using System.IO;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

public sealed class MarkGlibcxxWeak : Task
{
    const string Version = "GLIBCXX_3.4.32";

    [Required] public string Directory { get; set; } = "";
    public bool Force { get; set; }

    public override bool Execute()
    {
        if (!System.IO.Directory.Exists(Directory)) return true;
        var files = System.IO.Directory.GetFiles(Directory, "libLibTorchSharp.so", SearchOption.AllDirectories);
        if (files.Length == 0) return true;
        if (!Force && SystemLibStdCxxHas(Version))
        {
            Log.LogMessage(MessageImportance.Low, "libstdc++ provides " + Version + "; libLibTorchSharp.so left as is.");
            return true;
        }
        foreach (var file in files)
        {
            try
            {
                var bytes = File.ReadAllBytes(file);
                var result = MarkWeak(bytes, Version);
                if (result == PatchResult.Patched)
                {
                    // Replace, don't rewrite in place: the file may be a hard link into the NuGet cache.
                    var tmp = file + ".patching";
                    File.WriteAllBytes(tmp, bytes);
                    File.Delete(file);
                    File.Move(tmp, file);
                    Log.LogMessage(MessageImportance.High, "ddpm: marked " + Version + " weak in " + file);
                }
            }
            catch (Exception e)
            {
                Log.LogError("ddpm: could not patch " + file + ": " + e.Message);
                return false;
            }
        }
        return true;
    }

    static bool SystemLibStdCxxHas(string version)
    {
        string? path = null;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                var i = line.IndexOf('/');
                if (i >= 0 && line.Contains("libstdc++.so")) { path = line.Substring(i).Trim(); break; }
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        foreach (var candidate in new[] { path, "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6" })
        {
            if (candidate == null || !File.Exists(candidate)) continue;
            var needle = Encoding.ASCII.GetBytes(version + "\0");
            return IndexOf(File.ReadAllBytes(candidate), needle) >= 0;
        }
        return false; // unknown system: patching is harmless
    }

    static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }

    public enum PatchResult { NotFound, AlreadyWeak, Patched }

    /// <summary>Sets VER_FLG_WEAK on the Vernaux entry naming <paramref name="version"/> (ELF64 little-endian).</summary>
    public static PatchResult MarkWeak(byte[] elf, string version)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file");
        if (elf[4] != 2 || elf[5] != 1) throw new InvalidDataException("only 64-bit little-endian ELF is supported");
        long shoff = (long)BitConverter.ToUInt64(elf, 0x28);
        int shentsize = BitConverter.ToUInt16(elf, 0x3A);
        int shnum = BitConverter.ToUInt16(elf, 0x3C);
        const uint ShtGnuVerneed = 0x6ffffffe;
        for (int s = 0; s < shnum; s++)
        {
            long sh = shoff + (long)s * shentsize;
            if (BitConverter.ToUInt32(elf, (int)sh + 4) != ShtGnuVerneed) continue;
            uint link = BitConverter.ToUInt32(elf, (int)sh + 40);
            long secOff = (long)BitConverter.ToUInt64(elf, (int)sh + 24);
            long strOff = (long)BitConverter.ToUInt64(elf, (int)(shoff + (long)link * shentsize) + 24);
            long vn = secOff;
            while (true)
            {
                int cnt = BitConverter.ToUInt16(elf, (int)vn + 2);
                uint aux = BitConverter.ToUInt32(elf, (int)vn + 8);
                uint next = BitConverter.ToUInt32(elf, (int)vn + 12);
                long va = vn + aux;
                for (int k = 0; k < cnt; k++)
                {
                    uint name = BitConverter.ToUInt32(elf, (int)va + 8);
                    if (ReadCString(elf, strOff + name) == version)
                    {
                        int flagsAt = (int)va + 4;
                        ushort flags = BitConverter.ToUInt16(elf, flagsAt);
                        if ((flags & 0x2) != 0) return PatchResult.AlreadyWeak;
                        flags |= 0x2;
                        elf[flagsAt] = (byte)(flags & 0xff);
                        elf[flagsAt + 1] = (byte)(flags >> 8);
                        return PatchResult.Patched;
                    }
                    uint vnaNext = BitConverter.ToUInt32(elf, (int)va + 12);
                    if (vnaNext == 0) break;
                    va += vnaNext;
                }
                if (next == 0) break;
                vn += next;
            }
        }
        return PatchResult.NotFound;
    }

    static string ReadCString(byte[] b, long at)
    {
        int end = (int)at;
        while (end < b.Length && b[end] != 0) end++;
        return Encoding.ASCII.GetString(b, (int)at, end - (int)at);
    }
}
