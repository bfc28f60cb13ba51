// Generates images in the browser from the exported U-Net (model.onnx, facts in model.json) with onnxruntime-web's wasm
// backend. The samplers, the spacings and the noise are the Ddpm.Onnx library's (C#), step for step: every float32
// operation is rounded with Math.fround as C# rounds it, and the noise streams use only 32-bit integer arithmetic, so a
// seed gives the images Ddpm.Onnx gives up to the two runtimes' model arithmetic.
import * as ort from './ort/ort.wasm.min.mjs';

const f = Math.fround;
const $ = id => document.getElementById(id);

ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
// Threads need a cross-origin-isolated page (COOP/COEP headers), which a plain static server does not send.
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;

// ---- The schedule (float64, as DiffusionSchedule) -------------------------------------------------------------------
function schedule(betas) {
  const n = betas.length, alphas = [], ac = [], acPrev = [], postVar = [], coef1 = [], coef2 = [], logVarClipped = [];
  let cumprod = 1;
  for (let t = 0; t < n; t++) {
    alphas[t] = 1 - betas[t];
    acPrev[t] = cumprod;
    cumprod *= alphas[t];
    ac[t] = cumprod;
    postVar[t] = betas[t] * (1 - acPrev[t]) / (1 - ac[t]);
    coef1[t] = betas[t] * Math.sqrt(acPrev[t]) / (1 - ac[t]);
    coef2[t] = (1 - acPrev[t]) * Math.sqrt(alphas[t]) / (1 - ac[t]);
  }
  for (let t = 0; t < n; t++) logVarClipped[t] = Math.log(t === 0 && n > 1 ? postVar[1] : Math.max(postVar[t], 1e-20));
  return { T: n, betas, alphas, ac, postVar, coef1, coef2, logVarClipped };
}

const logSnr = s => s.ac.map(a => 0.5 * (Math.log(a) - Math.log(1 - a)));

// ---- Timestep spacings (TimestepSpacing.Ascending) ------------------------------------------------------------------
function ascending(s, steps, kind) {
  const n = s.T;
  if (!(steps >= 1 && steps <= n)) throw new Error(`steps must lie in 1..T = 1..${n}, got ${steps}`);
  if (steps === 1) return [n - 1];
  const points = [];
  if (kind === 'uniform' || kind === 'quadratic') {
    for (let i = 0; i < steps; i++)
      points[i] = kind === 'uniform' ? i * (n - 1) / (steps - 1) : Math.pow(i * Math.sqrt(n * 0.8) / (steps - 1), 2);
    return distinct(points, n, steps);
  }
  const lambdas = logSnr(s), lMin = lambdas[n - 1], lMax = lambdas[0], rho = 7;
  for (let i = 0; i < steps; i++) {
    const fr = i / (steps - 1);
    const lambda = kind === 'lambda' ? lMax + fr * (lMin - lMax)
      : -rho * Math.log(Math.exp(-lMax / rho) + fr * (Math.exp(-lMin / rho) - Math.exp(-lMax / rho)));
    points[i] = fractional(lambdas, lambda);
  }
  points[0] = 0;
  points[steps - 1] = n - 1;
  return distinct(points, n, steps);
}

function fractional(lambdas, lambda) {
  if (lambda >= lambdas[0]) return 0;
  if (lambda <= lambdas[lambdas.length - 1]) return lambdas.length - 1;
  let lo = 0, hi = lambdas.length - 1;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (lambdas[mid] > lambda) lo = mid; else hi = mid;
  }
  return lo + (lambdas[lo] - lambda) / (lambdas[lo] - lambdas[hi]);
}

// .NET's Math.Round: half to even.
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function distinct(points, n, steps) {
  const set = new Set(points.map(x => Math.min(Math.max(roundHalfEven(x), 0), n - 1)));
  for (let t = 0; set.size < steps; t++) set.add(t);
  return [...set].sort((a, b) => a - b);
}

// ---- Samplers over Float32Arrays (Ddpm.Onnx.Sampling) ---------------------------------------------------------------
function expm1(z) {
  if (Math.abs(z) >= 1) return Math.exp(z) - 1;
  let term = 1, sum = 0;
  for (let j = 0; j < 40 && term !== 0; j++) { sum += term; term *= z / (j + 2); }
  return z * sum;
}

const clamp1 = v => (v < -1 ? -1 : v > 1 ? 1 : v);

function dpmSolver(s, steps, stochastic, clip) {
  const timesteps = ascending(s, steps, 'karras').reverse(), n = timesteps.length;
  const alpha = [], sigma = [], lambda = [];
  timesteps.forEach((t, i) => {
    const a = s.ac[t];
    alpha[i] = Math.sqrt(a); sigma[i] = Math.sqrt(1 - a); lambda[i] = 0.5 * (Math.log(a) - Math.log(1 - a));
  });
  alpha[n] = 1; sigma[n] = 0; lambda[n] = Infinity;
  let previous = null, previousIndex = -1;
  return {
    timesteps,
    usesNoise: i => stochastic && i !== n - 1,
    step(eps, i, x, z, next) {
      if (i === 0) previousIndex = -1;
      const sg = f(sigma[i]), al = f(alpha[i]), d0 = new Float32Array(x.length);
      for (let k = 0; k < x.length; k++) {
        const v = f(f(x[k] - f(sg * eps[k])) / al);
        d0[k] = clip ? clamp1(v) : v;
      }
      if (i === n - 1) { next.set(d0); previousIndex = -1; return; }
      const second = previousIndex >= 0, h = lambda[i + 1] - lambda[i];
      const sigmaRatio = sigma[i + 1] / sigma[i], alphaNext = alpha[i + 1];
      const r = second ? f((lambda[i] - lambda[previousIndex]) / h) : 1, d1 = previous;
      const dAt = k => (second ? f(d0[k] + f(0.5 * f(f(d0[k] - d1[k]) / r))) : d0[k]);
      if (stochastic) {
        const decay = -expm1(-2 * h);
        const cx = f(sigmaRatio * Math.exp(-h)), cd = f(alphaNext * decay), cz = f(sigma[i + 1] * Math.sqrt(decay));
        for (let k = 0; k < x.length; k++) next[k] = f(f(f(cx * x[k]) + f(cd * dAt(k))) + f(cz * z[k]));
      } else {
        const cx = f(sigmaRatio), cd = f(alphaNext * expm1(-h));
        for (let k = 0; k < x.length; k++) next[k] = f(f(cx * x[k]) - f(cd * dAt(k)));
      }
      previous = d0; previousIndex = i;
    },
  };
}

function ddim(s, steps, clip) {
  const timesteps = ascending(s, steps, 'uniform').reverse(), n = timesteps.length;
  return {
    timesteps,
    usesNoise: () => false,
    step(eps, i, x, z, next) {
      const a = s.ac[timesteps[i]], aPrev = i + 1 < n ? s.ac[timesteps[i + 1]] : 1;
      const s1 = f(Math.sqrt(1 - a)), sa = f(Math.sqrt(a)), sp = f(Math.sqrt(aPrev)), dir = f(Math.sqrt(Math.max(1 - aPrev, 0)));
      for (let k = 0; k < x.length; k++) {
        let e = eps[k], x0 = f(f(x[k] - f(s1 * e)) / sa);
        if (clip) { x0 = clamp1(x0); e = f(f(x[k] - f(sa * x0)) / s1); }
        next[k] = f(f(sp * x0) + f(dir * e));
      }
    },
  };
}

function ddpm(s, steps, clip) {
  const asc = ascending(s, steps, 'uniform');
  let chain = s;
  if (steps !== s.T) {
    const betas = [];
    let previous = 1;
    for (const t of asc) { const a = s.ac[t]; betas.push(Math.min(1 - a / previous, 0.999)); previous = a; }
    chain = schedule(betas);
  }
  const timesteps = asc.slice().reverse(), n = timesteps.length;
  return {
    timesteps,
    usesNoise: i => i < n - 1,
    step(eps, i, x, z, next) {
      const t = n - 1 - i, ac = chain.ac[t];
      if (clip) {
        const r = f(1 / Math.sqrt(ac)), m = f(Math.sqrt(1 / ac - 1)), c1 = f(chain.coef1[t]), c2 = f(chain.coef2[t]);
        for (let k = 0; k < x.length; k++) next[k] = f(f(c1 * clamp1(f(f(r * x[k]) - f(m * eps[k])))) + f(c2 * x[k]));
      } else {
        const sr = f(1 / Math.sqrt(chain.alphas[t])), e = f(chain.betas[t] / Math.sqrt(1 - ac));
        for (let k = 0; k < x.length; k++) next[k] = f(sr * f(x[k] - f(e * eps[k])));
      }
      if (i === n - 1) return;
      const sd = f(Math.exp(f(0.5 * f(chain.logVarClipped[t]))));
      for (let k = 0; k < x.length; k++) next[k] = f(next[k] + f(sd * z[k]));
    },
  };
}

// ---- Noise (SeededNoise): stream (seed, image, draw), xoshiro128** seeded by a 32-bit SplitMix mixer, Box–Muller ----
function mix(z) {
  z = (z + 0x9E3779B9) >>> 0;
  z ^= z >>> 16; z = Math.imul(z, 0x21F0AAAD) >>> 0;
  z ^= z >>> 15; z = Math.imul(z, 0x735A2D97) >>> 0;
  z ^= z >>> 15;
  return z >>> 0;
}

const rotl = (x, k) => ((x << k) | (x >>> (32 - k))) >>> 0;

function normals(seed, image, draw, out, offset, count) {
  const key = mix((mix((mix(seed >>> 0) ^ (image >>> 0)) >>> 0) ^ (draw >>> 0)) >>> 0);
  let s0 = mix(key), s1 = mix((key ^ 0x85EBCA6B) >>> 0), s2 = mix((key ^ 0xC2B2AE35) >>> 0), s3 = mix((key ^ 0x27D4EB2F) >>> 0);
  if ((s0 | s1 | s2 | s3) === 0) s0 = 1;
  const next = () => {
    const result = Math.imul(rotl(Math.imul(s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (s1 << 9) >>> 0;
    s2 = (s2 ^ s0) >>> 0; s3 = (s3 ^ s1) >>> 0; s1 = (s1 ^ s2) >>> 0; s0 = (s0 ^ s3) >>> 0; s2 = (s2 ^ t) >>> 0;
    s3 = rotl(s3, 11);
    return result;
  };
  for (let i = 0; i < count; i += 2) {
    const u1 = ((next() >>> 8) + 0.5) / 16777216, u2 = (next() >>> 8) / 16777216;
    const r = Math.sqrt(-2 * Math.log(u1)), theta = 2 * Math.PI * u2;
    out[offset + i] = r * Math.cos(theta);
    if (i + 1 < count) out[offset + i + 1] = r * Math.sin(theta);
  }
}

function noise(seed, count, size, draw) {
  const out = new Float32Array(count * size);
  for (let j = 0; j < count; j++) normals(seed, j, draw, out, j * size, size);
  return out;
}

// ---- The model and one generation -----------------------------------------------------------------------------------
let session, info, sched, running = null;

function toEps(out, x, t, eps) {
  const ac = sched.ac[t];
  if (info.prediction === 'epsilon') eps.set(out);
  else if (info.prediction === 'x0') {
    const r = f(1 / Math.sqrt(ac)), m = f(Math.sqrt(1 / ac - 1));
    for (let k = 0; k < x.length; k++) eps[k] = f(f(f(r * x[k]) - out[k]) / m);
  } else {
    const s1 = f(Math.sqrt(1 - ac)), s = f(Math.sqrt(ac));
    for (let k = 0; k < x.length; k++) eps[k] = f(f(s1 * x[k]) + f(s * out[k]));
  }
}

/** Generates `count` images; calls onStep({index, steps, timestep, x, eps, xBefore}) after each step. Returns bytes [N,C,H,W]. */
async function generate({ count, seed, sampler, steps, label, guidance, clip, onStep, cancelled }) {
  const size = info.channels * info.height * info.width, len = count * size;
  const make = { 'dpmpp-2m-sde': () => dpmSolver(sched, steps, true, clip), 'dpmpp-2m': () => dpmSolver(sched, steps, false, clip),
    ddim: () => ddim(sched, steps, clip), ddpm: () => ddpm(sched, steps, clip) }[sampler];
  if (!make) throw new Error(`unknown sampler ${sampler}`);
  const s = make(), guided = label !== null && guidance !== 0, rows = guided ? 2 * count : count;
  let x = noise(seed, count, size, 0), next = new Float32Array(len);
  const eps = new Float32Array(len), uncond = new Float32Array(len);
  let labels = null;
  if (info.numClasses > 0) {
    labels = new BigInt64Array(rows);
    for (let j = 0; j < rows; j++) labels[j] = BigInt(label !== null && j < count ? label : info.nullLabel);
  }
  const input = guided ? new Float32Array(2 * len) : null;
  for (let i = 0; i < s.timesteps.length; i++) {
    if (cancelled()) throw new Error('cancelled');
    const t = s.timesteps[i];
    if (guided) { input.set(x, 0); input.set(x, len); }
    const feeds = {
      x: new ort.Tensor('float32', guided ? input : x, [rows, info.channels, info.height, info.width]),
      t: new ort.Tensor('int64', new BigInt64Array(rows).fill(BigInt(t)), [rows]),
    };
    if (labels) feeds.labels = new ort.Tensor('int64', labels, [rows]);
    const result = await session.run(feeds);
    const out = result.prediction.data;
    toEps(out.subarray(0, len), x, t, eps);
    if (guided) {
      toEps(out.subarray(len, 2 * len), x, t, uncond);
      const a = f(1 + guidance), w = f(guidance);
      for (let k = 0; k < len; k++) eps[k] = f(f(a * eps[k]) - f(w * uncond[k]));
    }
    const z = s.usesNoise(i) ? noise(seed, count, size, i + 1) : null;
    s.step(eps, i, x, z, next);
    result.prediction.dispose?.();
    await onStep({ index: i, steps: s.timesteps.length, timestep: t, xBefore: x, eps, x: next });
    [x, next] = [next, x];
  }
  const bytes = new Uint8Array(len);
  for (let k = 0; k < len; k++) bytes[k] = roundHalfEven(f(f(clamp1(x[k]) + 1) * 127.5));
  return bytes;
}

// ---- The page -------------------------------------------------------------------------------------------------------
function toBytes(values) {
  const bytes = new Uint8Array(values.length);
  for (let k = 0; k < values.length; k++) bytes[k] = roundHalfEven(f(f(clamp1(values[k]) + 1) * 127.5));
  return bytes;
}

function draw(canvas, bytes, count, perRow) {
  const { channels: c, height: h, width: w } = info, pad = 2;
  const cols = Math.min(perRow, count), rowsN = Math.ceil(count / cols);
  canvas.width = cols * (w + pad) + pad;
  canvas.height = rowsN * (h + pad) + pad;
  const g = canvas.getContext('2d'), image = g.createImageData(canvas.width, canvas.height);
  image.data.fill(0);
  for (let p = 3; p < image.data.length; p += 4) image.data[p] = 255;
  for (let n = 0; n < count; n++) {
    const x0 = pad + (n % cols) * (w + pad), y0 = pad + Math.floor(n / cols) * (h + pad);
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) {
        const q = ((y0 + y) * canvas.width + x0 + x) * 4;
        for (let ch = 0; ch < 3; ch++) image.data[q + ch] = bytes[((n * c + (c === 3 ? ch : 0)) * h + y) * w + x];
      }
  }
  g.putImageData(image, 0, 0);
}

function say(text, error = false) {
  $('message').textContent = text;
  $('message').classList.toggle('error', error);
}

function settings() {
  const int = id => Number.parseInt($(id).value, 10);
  const count = int('count'), steps = int('steps'), perRow = int('rows'), seed = Number($('seed').value);
  if (!(count >= 1 && count <= 64)) throw new Error('images must be 1..64');
  if (!(steps >= 1 && steps <= info.T)) throw new Error(`steps must lie in 1..${info.T}`);
  if (!(perRow >= 1)) throw new Error('per row must be >= 1');
  if (!(Number.isInteger(seed) && seed >= 0 && seed <= 4294967295)) throw new Error('the seed must be an integer in 0..4294967295');
  const classValue = $('class').value, guidance = Number($('guidance').value || 0);
  const label = info.numClasses > 0 && classValue !== '' ? Number(classValue) : null;
  if (!(guidance >= 0)) throw new Error('guidance must be >= 0');
  if (guidance !== 0 && label === null) throw new Error('guidance needs a class');
  return { count, steps, perRow, seed, label, guidance, sampler: $('sampler').value, clip: $('clip').checked };
}

/** Runs one generation with the page's settings (or `overrides`), showing the frames; resolves to its result. */
async function run(overrides = {}) {
  if (running) throw new Error('a generation is already running');
  const o = { ...settings(), ...overrides };
  const state = { cancelled: false };
  running = state;
  $('generate').disabled = true;
  $('cancel').disabled = false;
  $('download').hidden = true;
  say('');
  window.ddpm.frames = 0;
  const started = performance.now();
  try {
    const bytes = await generate({
      ...o, cancelled: () => state.cancelled,
      onStep: async step => {
        $('progress').value = (step.index + 1) / step.steps;
        $('status').textContent = `step ${step.index + 1} of ${step.steps} (t = ${step.timestep})`;
        const ac = sched.ac[step.timestep], r = f(1 / Math.sqrt(ac)), m = f(Math.sqrt(1 / ac - 1));
        const x0 = new Float32Array(step.x.length);
        for (let k = 0; k < x0.length; k++) {
          const v = f(f(r * step.xBefore[k]) - f(m * step.eps[k]));
          x0[k] = o.clip ? clamp1(v) : v;
        }
        draw($('frame-xt'), toBytes(step.x), o.count, o.perRow);
        draw($('frame-x0'), toBytes(x0), o.count, o.perRow);
        window.ddpm.frames++;
        await new Promise(resolve => setTimeout(resolve, 0)); // let the browser paint the frame
      },
    });
    const seconds = (performance.now() - started) / 1000;
    draw($('final'), bytes, o.count, o.perRow);
    $('download').href = $('final').toDataURL('image/png');
    $('download').hidden = false;
    $('status').textContent = `${o.count} images in ${seconds.toFixed(2)} s`;
    const result = { bytes: Array.from(bytes), seconds, count: o.count };
    window.ddpmLast = result;
    return result;
  } catch (e) {
    say(e.message, true);
    $('status').textContent = e.message === 'cancelled' ? 'Cancelled.' : 'Failed.';
    window.ddpmLast = { error: e.message };
    throw e;
  } finally {
    running = null;
    $('generate').disabled = false;
    $('cancel').disabled = true;
  }
}

async function init() {
  try {
    info = await (await fetch('model.json')).json();
    const shape = info['ddpm.image_shape'].split(',').map(Number);
    info = {
      prediction: info['ddpm.prediction'], betas: info['ddpm.betas'].split(',').map(Number),
      channels: shape[0], height: shape[1], width: shape[2],
      numClasses: Number(info['ddpm.num_classes']), nullLabel: Number(info['ddpm.null_label']), source: info['ddpm.source'],
    };
    sched = schedule(info.betas);
    info.T = sched.T;
    session = await ort.InferenceSession.create('model.onnx', { executionProviders: ['wasm'] });
    $('model-info').textContent = `${info.channels}×${info.height}×${info.width} images, ${info.prediction} prediction, ` +
      `T = ${info.T}${info.numClasses ? `, ${info.numClasses} classes` : ''}${info.source ? ` (${info.source})` : ''}`;
    if (info.numClasses > 0) {
      $('class-row').hidden = false;
      for (let c = 0; c < info.numClasses; c++) $('class').add(new Option(String(c), String(c)));
    }
    $('generate').disabled = false;
    document.body.dataset.ready = 'true';
  } catch (e) {
    say(`could not load the model: ${e.message}`, true);
    document.body.dataset.ready = 'error';
  }
}

$('form').addEventListener('submit', event => { event.preventDefault(); run().catch(() => {}); });
$('cancel').addEventListener('click', () => { if (running) running.cancelled = true; });
// For tests and scripts: run a generation, or draw the noise stream (seed, image, draw) that Ddpm.Onnx draws too.
window.ddpm = { run, frames: 0, noise: (seed, image, draw, count) => { const out = new Float32Array(count); normals(seed, image, draw, out, 0, count); return Array.from(out); } };
init();
