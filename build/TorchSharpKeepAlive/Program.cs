// TorchSharpKeepAlive: patches TorchSharp.dll so that no wrapper is finalized while libtorch reads its handle
// (KeepAlivePatch). Run by build/Ddpm.Native.targets on every copy of TorchSharp.dll an app gets.
//   patch <input> <output> [--verbose]   writes the patched assembly (input already patched: copied as it is)
//   check <dll>                          prints the patch's version and exits 0, or says it is not patched (exit 1)
// One line on stderr and exit code 2 on any error.
using Ddpm.Build;
using Mono.Cecil;

try
{
    switch (args)
    {
        case ["patch", var input, var output, .. var rest] when rest is [] or ["--verbose"]:
            Patch(input, output, verbose: rest is ["--verbose"]);
            return 0;
        case ["check", var path]:
            using (var module = ModuleDefinition.ReadModule(path))
            {
                var version = KeepAlivePatch.AppliedVersion(module);
                Console.WriteLine(version is null ? $"{path}: not patched" : $"{path}: patched, version {version}");
                return version is null ? 1 : 0;
            }
        default:
            Console.Error.WriteLine("usage: TorchSharpKeepAlive patch <TorchSharp.dll> <output.dll> [--verbose] | check <TorchSharp.dll>");
            return 2;
    }
}
catch (Exception e) when (e is PatchException or IOException or UnauthorizedAccessException or BadImageFormatException)
{
    Console.Error.WriteLine($"error: TorchSharpKeepAlive: {e.Message}");
    return 2;
}

static void Patch(string input, string output, bool verbose)
{
    var temporary = output + ".patching";
    Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(output))!);
    using (var module = ModuleDefinition.ReadModule(input, new ReaderParameters { ReadSymbols = false }))
    {
        var existing = KeepAlivePatch.AppliedVersion(module);
        if (existing == KeepAlivePatch.Version)
        {
            File.Copy(input, temporary, overwrite: true);
        }
        else if (existing is not null)
        {
            throw new PatchException($"{input} carries version {existing} of the patch, this tool writes " +
                $"{KeepAlivePatch.Version}: start from the NuGet package's TorchSharp.dll");
        }
        else
        {
            KeepAlivePatch.Report report;
            try { report = KeepAlivePatch.Apply(module); }
            catch (PatchException e) { throw new PatchException($"{input} {e.Message}"); }
            // Same input, same bytes: the MVID is a hash of the content. Name, version and public key are kept.
            module.Write(temporary, new WriterParameters { DeterministicMvid = true });
            if (verbose)
            {
                foreach (var getter in report.Getters) Console.WriteLine($"getter: {getter}");
                foreach (var method in report.FieldReads) Console.WriteLine($"field read: {method}");
            }
        }
    }
    // Replace, never write through: the output may be a hard link into the NuGet cache.
    File.Move(temporary, output, overwrite: true);
}
