using Ddpm.Server;
using Microsoft.Extensions.DependencyInjection;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Interactions;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;

namespace Ddpm.Tests.Server;

/// <summary>
/// The page in a real headless Chromium, served on loopback by Kestrel: pick the tiny checkpoint, generate, watch the
/// frames arrive, get the final grid; follow a run; close the page mid-generation. Screenshots are kept in
/// <c>TestResults/serve/</c> under the repository root.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class BrowserTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _profile = TestPaths.TempDir("chromium");

    public void Dispose() => Directory.Delete(_profile, recursive: true);

    private static string Screenshots
    {
        get
        {
            var dir = Path.Combine(TestPaths.RepoRoot, "TestResults", "serve");
            Directory.CreateDirectory(dir);
            return dir;
        }
    }

    private static T Script<T>(IWebDriver driver, string script) => (T)((IJavaScriptExecutor)driver).ExecuteScript(script)!;

    private static void Choose(IWebDriver driver, string selectId, string value)
    {
        var option = driver.FindElement(By.Id(selectId)).FindElements(By.TagName("option")).First(o => o.GetAttribute("value") == value);
        option.Click();
    }

    private static void Type(IWebDriver driver, string inputId, string text)
    {
        var input = driver.FindElement(By.Id(inputId));
        input.Clear();
        input.SendKeys(text);
    }

    [ChromiumFact]
    public async Task The_page_generates_with_live_frames_shows_the_grid_follows_a_run_and_stops_when_closed()
    {
        var runs = ServerRuns.Shared;
        var (app, address) = ServerRuns.OnLoopback(new ServerOptions
        {
            RunsDirectory = runs.Runs, FrameInterval = TimeSpan.Zero, Limits = new GenerationLimits { MaxImageSteps = 70_000 },
        });
        await using var server = app;
        var service = app.Services.GetRequiredService<GenerationService>();
        var catalog = app.Services.GetRequiredService<RunsCatalog>();
        var cond = catalog.Scan().Single(r => r.Name == "cond").Checkpoints.Single(c => c.Name == "checkpoint.ckpt");
        using var driver = Chromium.Start(_profile);
        try
        {
            // Selenium's calls block (sync over async): drive the browser from a thread of its own, so the thread pool
            // stays free for Kestrel, which serves the page from this same process.
            await Task.Factory.StartNew(() => Exercise(driver, address, cond, service), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        catch (Exception)
        {
            // What the page showed when it failed, for the CI log and the artifacts.
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "failure.png"));
            File.WriteAllText(Path.Combine(Screenshots, "failure.html"), driver.PageSource);
            output.WriteLine($"page at failure: {driver.Url}, status '{Text(driver, "status")}', message '{Text(driver, "message")}'");
            throw;
        }
    }

    private static string Text(IWebDriver driver, string id) => driver.FindElements(By.Id(id)).FirstOrDefault()?.Text ?? "(absent)";

    private void Exercise(ChromeDriver driver, Uri address, CheckpointInfo cond, GenerationService service)
    {
        var wait = new WebDriverWait(driver, TimeSpan.FromSeconds(120)) { PollingInterval = TimeSpan.FromMilliseconds(20) };

        driver.Navigate().GoToUrl(address);
        wait.Until(d => d.FindElements(By.CssSelector("#checkpoint option")).Count == 4); // two runs, each checkpoint.ckpt + checkpoint-12.ckpt
        Choose(driver, "checkpoint", cond.Id);
        Type(driver, "steps", "200");
        Type(driver, "count", "16");
        Type(driver, "rows", "4");
        Type(driver, "seed", "3");
        Choose(driver, "class", "1");
        Type(driver, "guidance", "2");
        driver.FindElement(By.Id("clip")).Click();
        driver.FindElement(By.Id("generate")).Click();

        // Poll what the page shows while it runs: the frame counter must grow, then the grid must appear.
        var seen = new List<int>();
        string phase = "";
        var clock = System.Diagnostics.Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(120))
        {
            var now = Script<IReadOnlyCollection<object>>(driver,
                "const l = document.getElementById('live'); return [l.dataset.state || '', l.dataset.frames || '0'];").Select(o => o.ToString()!).ToArray();
            phase = now[0];
            if (phase == "running") seen.Add(int.Parse(now[1]));
            if (phase is "done" or "error" or "cancelled") break;
            Thread.Sleep(15);
        }
        var message = driver.FindElement(By.Id("message")).Text;
        Assert.True(phase == "done", $"page state '{phase}', message '{message}'");
        var growing = seen.Where(f => f > 0).Distinct().ToList();
        output.WriteLine($"frame counts seen while running: {growing.Count} distinct, up to {growing.LastOrDefault()}");
        Assert.True(growing.Count >= 2, $"the frame counter did not grow while the page was polled: {string.Join(",", seen.Distinct())}");
        Assert.Equal(growing.Order(), growing);
        int frames = int.Parse(driver.FindElement(By.Id("live")).GetAttribute("data-frames")!);
        Assert.True(frames >= growing[^1] && frames > 1);
        Assert.Contains("done: 16 images, 200 steps", driver.FindElement(By.Id("status")).Text);

        var finalSrc = driver.FindElement(By.Id("final")).GetAttribute("src")!;
        var (width, height, _) = ServerClient.Decode(ServerClient.PngOf(finalSrc));
        int side = ServerClient.GridSide(4, ServerRuns.ImageSize);
        Assert.Equal((side, side), (width, height));
        Assert.Equal(side, Convert.ToInt32(Script<object>(driver, "return document.getElementById('final').naturalWidth;")));
        var download = driver.FindElement(By.Id("download"));
        Assert.True(download.Displayed);
        Assert.Equal(finalSrc, download.GetAttribute("href"));
        Assert.EndsWith(".png", download.GetAttribute("download"));
        var generatePng = Path.Combine(Screenshots, "generate.png");
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(generatePng);
        output.WriteLine($"screenshot: {generatePng}");

        // The runs page: the loss curve from loss.csv, the epoch table, the latest grid.
        driver.FindElement(By.Id("tab-runs")).Click();
        wait.Until(d => d.FindElements(By.CssSelector("#run-list li")).Count == 2);
        driver.FindElements(By.CssSelector("#run-list li")).First(li => li.Text.StartsWith("cond")).Click();
        wait.Until(d => d.FindElement(By.Id("loss-info")).Text.Contains("steps logged"));
        Assert.StartsWith($"{ServerRuns.TrainSteps} steps logged", driver.FindElement(By.Id("loss-info")).Text);
        wait.Until(d => Convert.ToInt32(Script<object>(d, "return document.getElementById('run-sample').naturalWidth;")) > 0);
        Assert.Equal(2, driver.FindElements(By.CssSelector("#epochs tr")).Count); // header + one epoch
        Assert.Contains("img/s", driver.FindElement(By.Id("run-summary")).Text);
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "runs.png"));

        // Closing the page mid-generation cancels the sampling within one step.
        var finished = new TaskCompletionSource<GenerationRecord>(TaskCreationOptions.RunContinuationsAsynchronously);
        service.Finished += r => { if (r.StepsTotal == ServerRuns.Timesteps) finished.TrySetResult(r); };
        driver.FindElement(By.Id("tab-generate")).Click();
        Type(driver, "steps", ServerRuns.Timesteps.ToString());
        Type(driver, "count", "64");
        Type(driver, "rows", "8");
        Choose(driver, "class", "");
        driver.FindElement(By.Id("generate")).Click();
        wait.Until(d => d.FindElement(By.Id("status")).Text.Contains($"/{ServerRuns.Timesteps}"));
        driver.Navigate().GoToUrl("about:blank");
        Assert.True(finished.Task.Wait(TimeSpan.FromSeconds(60)), "the closed page's generation did not end within 60 s");
        var record = finished.Task.Result;
        output.WriteLine($"closed page: {record}");
        Assert.Equal(GenerationOutcome.Cancelled, record.Outcome);
        Assert.True(record.StepsRun - record.StepsAtCancel <= 1, $"ran {record.StepsRun} steps, {record.StepsAtCancel} when cancelled");
        Assert.True(record.StepsRun < ServerRuns.Timesteps);
    }
    [ChromiumFact]
    public async Task The_page_draws_then_completes_cleans_up_and_interpolates_as_the_cli_does()
    {
        var runs = ServerRuns.Shared;
        var (app, address) = ServerRuns.OnLoopback(new ServerOptions
        {
            RunsDirectory = runs.Runs, FrameInterval = TimeSpan.Zero, Limits = new GenerationLimits { MaxImageSteps = 70_000 },
        });
        await using var server = app;
        var cond = app.Services.GetRequiredService<RunsCatalog>().Scan().Single(r => r.Name == "cond").Checkpoints.Single(c => c.Name == "checkpoint.ckpt");
        var work = TestPaths.TempDir("browser-edit");
        using var driver = Chromium.Start(_profile, height: 1000); // tall enough to show the drawing and the frames
        try
        {
            await Task.Factory.StartNew(() => Edit(driver, address, cond, runs.CondCheckpoint, work), CancellationToken.None,
                TaskCreationOptions.LongRunning, TaskScheduler.Default);
        }
        catch (Exception)
        {
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "edit-failure.png"));
            File.WriteAllText(Path.Combine(Screenshots, "edit-failure.html"), driver.PageSource);
            output.WriteLine($"page at failure: status '{Text(driver, "status")}', message '{Text(driver, "message")}'");
            throw;
        }
        finally { Directory.Delete(work, recursive: true); }
    }

    /// <summary>Presses Generate and waits for the page to finish; returns the final grid's pixels and the frames it
    /// showed.</summary>
    private static ((int Width, int Height, byte[] Pixels) Grid, int Frames) Run(ChromeDriver driver)
    {
        driver.FindElement(By.Id("generate")).Click();
        var wait = new WebDriverWait(driver, TimeSpan.FromSeconds(120)) { PollingInterval = TimeSpan.FromMilliseconds(50) };
        wait.Until(d => d.FindElement(By.Id("live")).GetAttribute("data-state") is "done" or "error" or "cancelled");
        Assert.True(driver.FindElement(By.Id("live")).GetAttribute("data-state") == "done", $"message '{Text(driver, "message")}'");
        int frames = int.Parse(driver.FindElement(By.Id("live")).GetAttribute("data-frames")!);
        return (ServerClient.Decode(ServerClient.PngOf(driver.FindElement(By.Id("final")).GetAttribute("src")!)), frames);
    }

    /// <summary>Drags the pointer over the drawing through <paramref name="points"/> (offsets from the canvas centre,
    /// in CSS pixels).</summary>
    private static void Stroke(ChromeDriver driver, params (int X, int Y)[] points)
    {
        var canvas = driver.FindElement(By.Id("overlay"));
        var actions = new Actions(driver).MoveToElement(canvas, points[0].X, points[0].Y).ClickAndHold();
        for (int i = 1; i < points.Length; i++) actions = actions.MoveByOffset(points[i].X - points[i - 1].X, points[i].Y - points[i - 1].Y);
        actions.Release().Perform();
    }

    /// <summary>Saves what a link of the page holds (a PNG data URL) as a file.</summary>
    private static string Save(ChromeDriver driver, string linkId, string path)
    {
        File.WriteAllBytes(path, ServerClient.PngOf(driver.FindElement(By.Id(linkId)).GetAttribute("href")!));
        return path;
    }

    private static (int Width, int Height, byte[] Pixels) Cli(string[] args, string png)
    {
        var (code, stderr) = TinyCli.RunCapturingStderr(args);
        Assert.True(code == 0, stderr);
        return ServerClient.Decode(File.ReadAllBytes(png));
    }

    private void Edit(ChromeDriver driver, Uri address, CheckpointInfo cond, string checkpoint, string work)
    {
        var wait = new WebDriverWait(driver, TimeSpan.FromSeconds(120)) { PollingInterval = TimeSpan.FromMilliseconds(20) };
        driver.Navigate().GoToUrl(address);
        wait.Until(d => d.FindElements(By.CssSelector("#checkpoint option")).Count == 4);
        Choose(driver, "checkpoint", cond.Id);
        driver.FindElement(By.CssSelector("input[name=mode][value=inpaint]")).Click();
        Assert.True(driver.FindElement(By.Id("draw-panel")).Displayed);
        // The canvas holds the model's 16×16 pixels, shown large.
        var canvas = driver.FindElement(By.Id("draw"));
        Assert.Equal("16", canvas.GetAttribute("width"));
        Assert.True(canvas.Size.Width >= 10 * ServerRuns.ImageSize, $"the drawing is shown {canvas.Size.Width} px wide");

        // Draw a stroke down the left and one across the top; erase a bit of the second.
        Stroke(driver, (-100, -120), (-90, -40), (-80, 40), (-70, 120));
        Stroke(driver, (-120, -100), (0, -100), (120, -100));
        driver.FindElement(By.Id("tool-eraser")).Click();
        Stroke(driver, (40, -100), (60, -100));
        driver.FindElement(By.Id("tool-brush")).Click();
        var drawing = ServerClient.Decode(File.ReadAllBytes(Save(driver, "drawing-link", Path.Combine(work, "drawing.png"))));
        var mask = ServerClient.Decode(File.ReadAllBytes(Save(driver, "mask-link", Path.Combine(work, "mask.png"))));
        int bright = Gray(drawing).Count(v => v > 128), kept = Gray(mask).Count(v => v > 128);
        output.WriteLine($"drawn: {bright} white pixels, mask keeps {kept} of 256");
        Assert.InRange(bright, 10, 200);
        Assert.True(kept > bright, "the mask keeps what was drawn, the eraser's pixels included");
        Assert.All(Gray(drawing).Zip(Gray(mask)), p => Assert.True(p.First <= 128 || p.Second > 128, "a drawn pixel is not kept"));

        // Complete: RePaint (r = 2, j = 2) over 8 ancestral steps, 4 completions, class 1 with guidance.
        Choose(driver, "sampler", "ddpm");
        Type(driver, "steps", "8");
        Type(driver, "count", "4");
        Type(driver, "rows", "2");
        Type(driver, "seed", "5");
        Type(driver, "resample", "2");
        Type(driver, "jump", "2");
        Choose(driver, "class", "1");
        Type(driver, "guidance", "1");
        var (completed, frames) = Run(driver);
        Assert.True(frames > 1, $"{frames} live frames");
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "complete.png"));
        var outDir = Path.Combine(work, "inpaint");
        var expected = Cli(["inpaint", "--checkpoint", checkpoint, "--image", Path.Combine(work, "drawing.png"), "--mask", Path.Combine(work, "mask.png"),
            "--num", "4", "--grid-rows", "2", "--seed", "5", "--sampler", "ddpm", "--steps", "8", "--resample", "2", "--jump", "2", "--class", "1",
            "--guidance", "1", "--frames", "0", "--out", outDir, "--device", "cpu"], Path.Combine(outDir, "samples.png"));
        Assert.Equal((expected.Width, expected.Height), (completed.Width, completed.Height));
        Assert.Equal(expected.Pixels, completed.Pixels);

        // A marked region: the mask then keeps everything but the region, drawn or not.
        driver.FindElement(By.Id("tool-region")).Click();
        Stroke(driver, (60, 60), (120, 120));
        var regionMask = Gray(ServerClient.Decode(File.ReadAllBytes(Save(driver, "mask-link", Path.Combine(work, "region.png")))));
        int completedPixels = regionMask.Count(v => v <= 128);
        Assert.InRange(completedPixels, 4, 100);
        Assert.True(regionMask.Count(v => v > 128) > kept, "outside the region, undrawn pixels are kept too");

        // Clean up: image-to-image at strength 0.6 by DDIM, as ddpm sample --init.
        driver.FindElement(By.CssSelector("input[name=mode][value=img2img]")).Click();
        Script<object>(driver, "const s = document.getElementById('strength'); s.value = '0.6'; s.dispatchEvent(new Event('input'));");
        Assert.Equal("0.60", driver.FindElement(By.Id("strength-value")).Text);
        Choose(driver, "sampler", "ddim");
        Choose(driver, "class", "");
        var (cleaned, _) = Run(driver);
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "clean-up.png"));
        outDir = Path.Combine(work, "img2img");
        expected = Cli(["sample", "--checkpoint", checkpoint, "--init", Path.Combine(work, "drawing.png"), "--strength", "0.6", "--num", "4",
            "--grid-rows", "2", "--seed", "5", "--sampler", "ddim", "--steps", "8", "--frames", "0", "--out", outDir, "--device", "cpu"],
            Path.Combine(outDir, "samples.png"));
        Assert.Equal(expected.Pixels, cleaned.Pixels);

        // Interpolate: 5 frames from seed 5 (class 0) to seed 9 (class 1), one strip.
        driver.FindElement(By.CssSelector("input[name=mode][value=interpolate]")).Click();
        Assert.False(driver.FindElement(By.Id("draw-panel")).Displayed);
        Type(driver, "to-seed", "9");
        Type(driver, "frames", "5");
        Choose(driver, "class", "0");
        Choose(driver, "to-class", "1");
        var (strip, _) = Run(driver);
        Assert.Equal((ServerClient.GridSide(5, ServerRuns.ImageSize), ServerRuns.ImageSize + 4), (strip.Width, strip.Height));
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "interpolate.png"));
        outDir = Path.Combine(work, "interpolate");
        expected = Cli(["interpolate", "--checkpoint", checkpoint, "--seeds", "5,9", "--num", "5", "--classes", "0,1", "--guidance", "1",
            "--sampler", "ddim", "--steps", "8", "--out", outDir, "--device", "cpu"], Path.Combine(outDir, "samples.png"));
        Assert.Equal(expected.Pixels, strip.Pixels);
    }

    /// <summary>One gray value per pixel (the red channel of what Skia decoded: Gray8 or RGBA).</summary>
    private static byte[] Gray((int Width, int Height, byte[] Pixels) image)
    {
        int step = image.Pixels.Length / (image.Width * image.Height);
        return Enumerable.Range(0, image.Width * image.Height).Select(i => image.Pixels[i * step]).ToArray();
    }
}
