using System.Buffers.Binary;
using System.Collections;
using System.IO.Compression;
using Ddpm.IO;
using Ddpm.Runtime;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Interop;

/// <summary>
/// Reads and writes PyTorch state_dicts (<c>torch.save(model.state_dict())</c> zip files and safetensors) and loads
/// them into a module all-or-nothing, reporting every missing, unexpected and mis-shaped key by name.
/// </summary>
public static class StateDictIo
{
    private const string ManifestEntry = "manifest.json";

    /// <summary>
    /// Tells the formats apart by content: a zip holding <c>manifest.json</c> is a ddpm checkpoint, a zip holding
    /// <c>&lt;name&gt;/data.pkl</c> is a PyTorch file (both are zips), and an 8-byte little-endian header length
    /// followed by <c>{</c> is safetensors. Throws <see cref="WeightsException"/> for anything else.
    /// </summary>
    public static WeightFormat Detect(string path)
    {
        using var file = OpenChecked(path);
        return Detect(file, path);
    }

    /// <summary>Opens a weight file for reading, after <see cref="PathCheck.FileProblem"/>; failures name it.</summary>
    internal static FileStream OpenChecked(string path)
    {
        if (PathCheck.FileProblem(path) is { } problem) throw new WeightsException(path, problem);
        try { return RegularFile.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new WeightsException(path, "cannot be read: " + e.Message, e);
        }
    }

    /// <summary>
    /// <see cref="Detect(string)"/> of an open file (named <paramref name="path"/> in messages); leaves it at its
    /// start.
    /// </summary>
    internal static WeightFormat Detect(Stream file, string path)
    {
        Span<byte> head = stackalloc byte[9];
        file.Position = 0;
        int n = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        file.Position = 0;
        if (n >= 4 && head[0] == 0x50 && head[1] == 0x4b && head[2] == 0x03 && head[3] == 0x04)
        {
            try
            {
                using var zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: true);
                if (zip.GetEntry(ManifestEntry) is not null) return WeightFormat.Checkpoint;
                if (zip.Entries.Any(e => IsDataPkl(e.FullName))) return WeightFormat.PyTorch;
            }
            catch (InvalidDataException e) { throw new WeightsException(path, "a corrupt zip archive: " + e.Message, e); }
            finally { file.Position = 0; }
            throw new WeightsException(path, "a zip archive that is neither a ddpm checkpoint (no manifest.json) nor a PyTorch file (no <name>/data.pkl)");
        }
        if (n == 9 && head[8] == (byte)'{' && BinaryPrimitives.ReadUInt64LittleEndian(head) < (ulong)file.Length)
            return WeightFormat.Safetensors;
        if (n >= 2 && head[0] == 0x80)
            throw new WeightsException(path, "a legacy (pre-1.6, non-zip) torch.save file; re-save it with a current PyTorch or as safetensors");
        throw new WeightsException(path, "not a ddpm checkpoint, PyTorch state_dict (.pth) or safetensors file");
    }

    /// <summary>
    /// Reads a state_dict from a PyTorch zip file or a safetensors file (CPU tensors, keys as stored).
    /// A PyTorch file's pickle is checked first and refused if it references anything but tensors and plain containers.
    /// The caller owns (disposes) the tensors.
    /// </summary>
    public static Dictionary<string, Tensor> Read(string path) => Detect(path) switch
    {
        WeightFormat.PyTorch => ReadPyTorch(path),
        WeightFormat.Safetensors => ReadSafetensors(path),
        _ => throw new WeightsException(path, "is a ddpm checkpoint, not a raw state_dict (load it with ModelFile.Load)"),
    };

    /// <summary>
    /// Writes a state_dict, as PyTorch's zip format for <c>.pth</c>/<c>.pt</c>/<c>.bin</c> or safetensors for
    /// <c>.safetensors</c>, atomically (<see cref="AtomicFile"/>).
    /// </summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> stateDict)
    {
        TorchSharpPatch.EnsureApplied();
        var ext = Path.GetExtension(path).ToLowerInvariant();
        if (ext is not (".pth" or ".pt" or ".bin" or ".safetensors"))
            throw new WeightsException(path, "unknown extension (use .pth, .pt or .bin for PyTorch, .safetensors for safetensors)");
        var ordered = stateDict.ToDictionary(kv => kv.Key, kv => kv.Value);
        AtomicFile.Write(path, file =>
        {
            if (ext == ".safetensors") Safetensors.SaveStateDict(file, ordered, leaveOpen: true);
            else PyTorchPickler.PickleStateDict(file, ordered, leaveOpen: true);
        });
    }

    /// <summary>
    /// The module's state_dict as PyTorch expects it: every key, float32, contiguous, detached CPU copies.
    /// The caller owns (disposes) the tensors.
    /// </summary>
    public static Dictionary<string, Tensor> Export(nn.Module module)
    {
        var result = new Dictionary<string, Tensor>();
        using var _ = no_grad();
        foreach (var (name, tensor) in module.state_dict())
            result[name] = tensor.detach().to(float32, CPU, copy: true).contiguous();
        return result;
    }

    /// <summary>
    /// Copies <paramref name="stateDict"/> into <paramref name="module"/>'s parameters and buffers, all or nothing.
    /// Every problem is collected first: missing keys (allowed, and returned, when <paramref name="strict"/> is false),
    /// unexpected keys and shape or dtype mismatches (always errors). Floating-point values are cast to the module's
    /// dtype.
    /// </summary>
    /// <returns>The missing keys (empty when strict).</returns>
    /// <exception cref="WeightsException">Listing every missing (when strict), unexpected and mismatched key; nothing
    /// is loaded.</exception>
    public static IReadOnlyList<string> LoadInto(nn.Module module, IReadOnlyDictionary<string, Tensor> stateDict, bool strict = true,
        string source = "(state_dict)")
    {
        var target = module.state_dict();
        var missing = target.Keys.Where(k => !stateDict.ContainsKey(k)).ToList();
        var unexpected = stateDict.Keys.Where(k => !target.ContainsKey(k)).Order(StringComparer.Ordinal).ToList();
        var mismatched = new List<string>();
        foreach (var (name, dst) in target)
        {
            if (!stateDict.TryGetValue(name, out var src)) continue;
            if (!src.shape.SequenceEqual(dst.shape))
                mismatched.Add($"{name} (file {Shape(src)}, model {Shape(dst)})");
            else if (!src.is_floating_point())
                mismatched.Add($"{name} (file dtype {src.dtype}, model {dst.dtype})");
        }
        if (unexpected.Count > 0 || mismatched.Count > 0 || strict && missing.Count > 0)
            throw new WeightsException(source, strict ? missing : [], unexpected, mismatched);
        using (no_grad())
        {
            foreach (var (name, dst) in target)
                if (stateDict.TryGetValue(name, out var src))
                    dst.copy_(src);
        }
        return missing;
    }

    private static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";

    private static bool IsDataPkl(string entry)
    {
        var slash = entry.IndexOf('/');
        return slash > 0 && entry[(slash + 1)..] == "data.pkl";
    }

    private static Dictionary<string, Tensor> ReadSafetensors(string path)
    {
        // PyBridge trusts the header (lengths, offsets); check it first, on the same bytes it then reads.
        var bytes = File.ReadAllBytes(path);
        try { Training.SafetensorsWeights.Validate(bytes, path); }
        catch (Training.CheckpointException e) { throw new WeightsException(path, "not a readable safetensors file: " + e.Message, e); }
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            return Safetensors.LoadStateDict(stream);
        }
        catch (Exception e) when (e is not WeightsException and not OutOfMemoryException)
        {
            throw new WeightsException(path, "not a readable safetensors file: " + e.Message, e);
        }
    }

    private static Dictionary<string, Tensor> ReadPyTorch(string path)
    {
        // Read once: the bytes checked are the bytes unpickled.
        var bytes = File.ReadAllBytes(path);
        using var stream = new MemoryStream(bytes, writable: false);
        using (var zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: true))
        {
            // Every entry must inflate to exactly what it declares, and all of them together to a few times the file:
            // torch.save stores entries uncompressed, so a small file declaring gigabytes is a zip bomb.
            long declared = zip.Entries.Sum(e => e.Length), limit = 4L * bytes.Length + (64L << 20);
            if (declared > limit)
                throw new WeightsException(path, $"its zip entries declare {declared:N0} bytes in a {bytes.Length:N0}-byte file (refused: more than {limit:N0})");
            try { BoundedZip.CheckSizes(zip, limit); }
            catch (InvalidDataException e) { throw new WeightsException(path, "a corrupt zip archive: " + e.Message, e); }
            // PyBridge unpickles the first entry whose name ends with data.pkl; check every such entry.
            var pickles = zip.Entries.Where(e => e.Name.EndsWith("data.pkl", StringComparison.Ordinal)).ToList();
            if (pickles.Count == 0) throw new WeightsException(path, "a zip archive without <name>/data.pkl");
            foreach (var entry in pickles)
            {
                byte[] pickle;
                try { pickle = BoundedZip.ReadAll(entry, PickleGuard.MaxPickleBytes); }
                catch (InvalidDataException e) { throw new WeightsException(path, "refused to unpickle: " + e.Message, e); }
                PickleGuard.Verify(pickle, path);
            }
            var byteorder = zip.Entries.FirstOrDefault(e => e.Name == "byteorder");
            if (byteorder is not null)
            {
                using var r = new StreamReader(byteorder.Open());
                var order = r.ReadToEnd().Trim();
                if (order != "little") throw new WeightsException(path, $"stored with byteorder '{order}'; only little-endian files are supported");
            }
        }
        stream.Position = 0;
        Hashtable table;
        try { table = PyTorchUnpickler.UnpickleStateDict(stream, leaveOpen: true); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new WeightsException(path, "not a readable torch.save(state_dict) file: " + e.Message, e);
        }
        var result = new Dictionary<string, Tensor>();
        var notTensors = new List<string>();
        foreach (DictionaryEntry kv in table)
        {
            if (kv.Key is string key && kv.Value is Tensor t) result[key] = t;
            else notTensors.Add(kv.Key?.ToString() ?? "(null)");
        }
        if (notTensors.Count > 0)
        {
            foreach (var t in result.Values) t.Dispose();
            throw new WeightsException(path, $"not a state_dict: entries that are not tensors: {string.Join(", ", notTensors)}");
        }
        return result;
    }
}
