using System.Net.Http.Json;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using SkiaSharp;

namespace Ddpm.Tests.Server;

/// <summary>One Server-Sent Event: its name and JSON data.</summary>
internal sealed record ServerEvent(string Name, JsonElement Data);

/// <summary>What the tests do with the server over HTTP.</summary>
internal static class ServerClient
{
    public static HttpRequestMessage Generate(object body) => new(HttpMethod.Post, "api/generate") { Content = JsonContent.Create(body) };

    /// <summary>Sends a generation request, returning as soon as the headers arrive (the body is a stream).</summary>
    public static Task<HttpResponseMessage> Start(HttpClient client, object body, CancellationToken cancel = default) =>
        client.SendAsync(Generate(body), HttpCompletionOption.ResponseHeadersRead, cancel);

    /// <summary>The events of a <c>text/event-stream</c> body, as they arrive.</summary>
    public static async IAsyncEnumerable<ServerEvent> Events(HttpResponseMessage response, [EnumeratorCancellation] CancellationToken cancel = default)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel), Encoding.UTF8);
        string name = "message";
        var data = new StringBuilder();
        while (await reader.ReadLineAsync(cancel) is { } line)
        {
            if (line.Length == 0)
            {
                if (data.Length > 0) yield return new ServerEvent(name, JsonDocument.Parse(data.ToString()).RootElement.Clone());
                (name, data) = ("message", new StringBuilder());
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal)) name = line[7..];
            else if (line.StartsWith("data: ", StringComparison.Ordinal)) data.Append(line[6..]);
        }
    }

    /// <summary>All events of a generation that runs to its end.</summary>
    public static async Task<List<ServerEvent>> ReadAll(HttpResponseMessage response)
    {
        var list = new List<ServerEvent>();
        await foreach (var e in Events(response)) list.Add(e);
        return list;
    }

    /// <summary>The PNG bytes of a <c>data:image/png;base64,</c> URL.</summary>
    public static byte[] PngOf(string dataUrl)
    {
        const string prefix = "data:image/png;base64,";
        Assert.StartsWith(prefix, dataUrl);
        return Convert.FromBase64String(dataUrl[prefix.Length..]);
    }

    /// <summary>Decoded 8-bit pixels of a PNG (width, height, and the Gray8/RGBA bytes as Skia decodes them).</summary>
    public static (int Width, int Height, byte[] Pixels) Decode(byte[] png)
    {
        using var bitmap = SKBitmap.Decode(png) ?? throw new InvalidDataException("not a decodable PNG");
        return (bitmap.Width, bitmap.Height, bitmap.Bytes);
    }

    /// <summary>The side of a square grid of <paramref name="perRow"/> images of <paramref name="size"/> pixels with
    /// 2-pixel padding.</summary>
    public static int GridSide(int perRow, int size) => perRow * (size + 2) + 2;

    public static async Task<JsonElement> Json(HttpClient client, string url)
    {
        using var response = await client.GetAsync(url);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
    }
}
