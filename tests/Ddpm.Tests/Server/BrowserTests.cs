using Ddpm.Server;
using Microsoft.Extensions.DependencyInjection;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
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
}
