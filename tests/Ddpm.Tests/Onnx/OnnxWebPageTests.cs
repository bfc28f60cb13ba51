using System.Diagnostics;
using Ddpm.Interop.Onnx;
using Ddpm.Tests.Server;
using OpenQA.Selenium;
using OpenQA.Selenium.Chrome;
using OpenQA.Selenium.Support.UI;
using Xunit.Abstractions;
using Ort = Ddpm.Onnx;

namespace Ddpm.Tests.Onnx;

/// <summary>
/// The page of 'ddpm export --web' in Debian's headless Chromium, served from a plain static server on loopback: it
/// loads onnxruntime-web and the model from its own folder, generates 16 images with live frames, and for a seed makes
/// what the ORT generator (Ddpm.Onnx, native ONNX Runtime) makes. Screenshots go to TestResults/onnx-web/.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class OnnxWebPageTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("onnx-web");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static string Screenshots => Directory.CreateDirectory(Path.Combine(TestPaths.RepoRoot, "TestResults", "onnx-web")).FullName;

    [ChromiumFact]
    public async Task The_exported_page_generates_digits_in_the_browser_as_the_ORT_generator_does()
    {
        var config = OnnxFamilies.Config("quick"); // 28×28, ten classes: the shipped model's shape
        using (var model = OnnxGeneratorTests.Small(config))
            OnnxWebExport.Write(model, config, Path.Combine(_dir, "web"), source: "test");
        var modelPath = Path.Combine(_dir, "web", "model.onnx");
        var (app, address) = await StaticSite.Start(Path.Combine(_dir, "web"));
        await using var server = app;
        var profile = Directory.CreateDirectory(Path.Combine(_dir, "profile")).FullName;
        using var driver = Chromium.Start(profile);
        try
        {
            // Selenium blocks; Kestrel needs the thread pool: drive the browser from a thread of its own.
            await Task.Factory.StartNew(() => Exercise(driver, address, modelPath), CancellationToken.None, TaskCreationOptions.LongRunning,
                TaskScheduler.Default);
        }
        catch (Exception)
        {
            ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "failure.png"));
            output.WriteLine($"page at failure: status '{driver.FindElement(By.Id("status")).Text}', message '{driver.FindElement(By.Id("message")).Text}'");
            throw;
        }
    }

    private void Exercise(ChromeDriver driver, Uri address, string modelPath)
    {
        driver.Manage().Timeouts().AsynchronousJavaScript = TimeSpan.FromMinutes(3);
        var wait = new WebDriverWait(driver, TimeSpan.FromMinutes(3)) { PollingInterval = TimeSpan.FromMilliseconds(20) };
        driver.Navigate().GoToUrl(address);
        wait.Until(d => d.FindElement(By.TagName("body")).GetAttribute("data-ready") is "true" or "error");
        Assert.Equal("", driver.FindElement(By.Id("message")).Text);
        Assert.Contains("1×28×28 images, epsilon prediction, T = 200, 10 classes (test)", driver.FindElement(By.Id("model-info")).Text);

        // The noise: JavaScript's streams are SeededNoise's, value for value.
        foreach (var (seed, image, draw) in new[] { (0u, 0L, 0u), (7u, 3L, 5u), (4294967295u, 15L, 21u) })
        {
            var js = ((IReadOnlyCollection<object>)((IJavaScriptExecutor)driver).ExecuteScript(
                $"return window.ddpm.noise({seed}, {image}, {draw}, 785);")!).Select(Convert.ToSingle).ToArray();
            var expected = new float[785];
            Ort.Sampling.SeededNoise.Normals(seed, image, draw, expected);
            Assert.Equal(expected, js);
        }

        // The page as a person uses it: 16 images, the default sampler, live frames, then the grid.
        int statuses = 0;
        var clock = Stopwatch.StartNew();
        driver.FindElement(By.Id("generate")).Click();
        string lastStatus = "";
        wait.Until(d =>
        {
            var status = d.FindElement(By.Id("status")).Text;
            if (status != lastStatus && status.StartsWith("step ", StringComparison.Ordinal)) statuses++;
            lastStatus = status;
            return status.Contains("images in") || status == "Failed.";
        });
        output.WriteLine($"16 images, 20 steps in the browser: '{lastStatus}' ({clock.Elapsed.TotalSeconds:F1} s with the test's polling)");
        Assert.StartsWith("16 images in", lastStatus);
        Assert.True(statuses >= 1, "no step was shown while generating");
        Assert.Equal(20L, ((IJavaScriptExecutor)driver).ExecuteScript("return window.ddpm.frames;")); // x_t and x̂_0 drawn after every step
        Assert.Equal(1.0, Convert.ToDouble(((IJavaScriptExecutor)driver).ExecuteScript("return document.getElementById('progress').value;")));
        foreach (var canvas in new[] { "frame-xt", "frame-x0", "final" })
            Assert.Equal(4 * 30 + 2, Convert.ToInt32(((IJavaScriptExecutor)driver).ExecuteScript($"return document.getElementById('{canvas}').width;")));
        Assert.False(driver.FindElement(By.Id("download")).GetAttribute("hidden") is not null);
        ((ITakesScreenshot)driver).GetScreenshot().SaveAsFile(Path.Combine(Screenshots, "page.png"));

        // For given seeds, the page's bytes are the ORT generator's, within one level (two runtimes' float arithmetic).
        // The random model's x̂_0 leaves [−1, 1] by far, so the cases clip it: unclipped, the images are flat ±1 and
        // prove little.
        using var generator = Ort.OnnxImageGenerator.Load(modelPath);
        var cases = new (string Js, Ort.GenerationRequest Request)[]
        {
            ("{count: 16, seed: 5, sampler: 'dpmpp-2m-sde', steps: 20, label: 3, guidance: 1.5, clip: true}",
                new Ort.GenerationRequest { Count = 16, Seed = 5, Labels = Enumerable.Repeat(3, 16).ToArray(), Guidance = 1.5,
                    Sampler = new Ort.Sampling.SamplerSettings { ClipX0 = true } }),
            ("{count: 6, seed: 11, sampler: 'ddpm', steps: 25, label: null, guidance: 0, clip: true}",
                new Ort.GenerationRequest { Count = 6, Seed = 11,
                    Sampler = new Ort.Sampling.SamplerSettings { Kind = Ort.Sampling.SamplerKind.Ddpm, Steps = 25, ClipX0 = true } }),
            ("{count: 4, seed: 2, sampler: 'ddim', steps: 10, label: 7, guidance: 0, clip: true}",
                new Ort.GenerationRequest { Count = 4, Seed = 2, Labels = [7, 7, 7, 7],
                    Sampler = new Ort.Sampling.SamplerSettings { Kind = Ort.Sampling.SamplerKind.Ddim, Steps = 10, ClipX0 = true } }),
        };
        foreach (var (js, request) in cases)
        {
            var result = (string)((IJavaScriptExecutor)driver).ExecuteAsyncScript(
                $"const done = arguments[arguments.length - 1]; window.ddpm.run({js}).then(r => done(r.bytes.join(',')), e => done('error: ' + e.message));")!;
            Assert.False(result.StartsWith("error", StringComparison.Ordinal), result);
            var page = result.Split(',').Select(byte.Parse).ToArray();
            var expected = generator.Generate(request).ToBytes();
            Assert.Equal(expected.Length, page.Length);
            int maxDiff = expected.Zip(page, (a, b) => Math.Abs(a - b)).Max();
            int differing = expected.Zip(page, (a, b) => a != b ? 1 : 0).Sum();
            output.WriteLine($"{js}: {differing} of {expected.Length} bytes differ from Ddpm.Onnx's, by up to {maxDiff}");
            Assert.True(maxDiff <= 1, $"{js}: {differing} of {expected.Length} bytes differ, by up to {maxDiff} levels");
            Assert.True(expected.Distinct().Count() > 20, $"{js}: a flat image ({expected.Distinct().Count()} levels)");
        }
    }
}
