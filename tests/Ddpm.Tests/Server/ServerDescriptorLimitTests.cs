using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;
using Ddpm.Tests.Cli;
using Ddpm.Tests.Data;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Server;

/// <summary>
/// <c>ddpm serve</c> short of file descriptors (issue 25): a flood of connections cannot starve it (it caps what it
/// accepts by what the limit leaves), and a limit too low for connections is one line at start.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class ServerDescriptorLimitTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Serve_refuses_a_limit_too_low_for_connections_in_one_line()
    {
        Directory.CreateDirectory(_tmp.File("runs/tiny"));
        TinyCheckpoint.Write(_tmp.File("runs/tiny/checkpoint.ckpt"));
        using var run = ChildProcess.StartLimited(300, ChildProcess.CliDll, "serve", "--runs", _tmp.File("runs"), "--port", FreePort().ToString());
        Assert.Equal(1, run.WaitForExit(Limit));
        CliDescriptorLimitTests.AssertOneLine(run.Stderr, "the open-file limit is 300 (ulimit -n)");
        Assert.Contains("ddpm serve needs at least", run.Stderr);
    }

    [Fact]
    public async Task A_flood_of_idle_connections_just_after_start_leaves_the_server_answering()
    {
        Directory.CreateDirectory(_tmp.File("runs/tiny"));
        TinyCheckpoint.Write(_tmp.File("runs/tiny/checkpoint.ckpt"));
        int port = FreePort();
        using var server = ChildProcess.StartLimited(1024, ChildProcess.CliDll, "serve", "--runs", _tmp.File("runs"), "--port", port.ToString());
        server.WaitUntil(() => server.Stdout.Contains($"http://127.0.0.1:{port}/"), Limit, "the server to listen");

        // 1,124 connections that send nothing: more than the server's whole descriptor limit.
        var flood = new List<Socket>();
        try
        {
            for (int i = 0; i < 1124; i++)
            {
                var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                flood.Add(s);
                await s.ConnectAsync(IPAddress.Loopback, port);
            }
            await Task.Delay(TimeSpan.FromSeconds(5)); // the server accepts (and turns away) what it can meanwhile
        }
        finally
        {
            foreach (var s in flood) s.Dispose();
        }
        if (server.Process.HasExited) Assert.Fail($"the server exited ({server.Process.ExitCode}):\n{server.Stdout}\n{server.Stderr}");
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(30) };
        foreach (var url in new[] { "api/runs", "", "api/options" })
        {
            using var response = await http.GetAsync(url);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        Assert.Contains("\"tiny\"", await http.GetStringAsync("api/runs"));
        Assert.DoesNotContain("fail:", server.Stdout);
        // It said how many connections the limit leaves room for.
        var cap = Regex.Match(server.Stdout, @"accepting at most (\d+) connections at once \(open-file limit 1024\)");
        Assert.True(cap.Success && int.Parse(cap.Groups[1].Value) is > 16 and < 512, server.Stdout);
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
