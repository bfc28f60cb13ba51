// ddpm serve: the page. Vanilla JS, no dependencies; everything it reads comes from this server.
'use strict';

const $ = id => document.getElementById(id);
const state = { options: null, runs: [], checkpoints: new Map(), abort: null, run: null, loss: null, timers: [] };

// ---------- tabs ----------
for (const tab of document.querySelectorAll('.tab')) {
  tab.addEventListener('click', () => show(tab.dataset.view));
}
function show(view) {
  for (const tab of document.querySelectorAll('.tab')) tab.classList.toggle('active', tab.dataset.view === view);
  $('view-generate').hidden = view !== 'generate';
  $('view-runs').hidden = view !== 'runs';
  if (view === 'runs') refreshRuns();
}

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: 'application/json' } });
  if (!response.ok) throw new Error(await problem(response));
  return response.json();
}
async function problem(response) {
  try { const p = await response.json(); return p.detail || p.title || response.statusText; }
  catch { return `${response.status} ${response.statusText}`; }
}
const fileUrl = path => '/files/' + path.split('/').map(encodeURIComponent).join('/');

// ---------- generate ----------
async function init() {
  try {
    state.options = await getJson('/api/options');
    for (const s of state.options.samplers) $('sampler').add(new Option(s, s));
    $('count').max = state.options.maxImages;
    await refreshRuns();
  } catch (e) { say(e.message, true); }
}

function fillCheckpoints() {
  const select = $('checkpoint');
  const previous = select.value;
  select.replaceChildren();
  state.checkpoints.clear();
  for (const run of state.runs) {
    if (!run.checkpoints.length) continue;
    const group = document.createElement('optgroup');
    group.label = run.name;
    for (const c of run.checkpoints) {
      state.checkpoints.set(c.id, c);
      group.append(new Option(`${run.name}/${c.name} (step ${c.step})`, c.id));
    }
    select.append(group);
  }
  if (state.checkpoints.has(previous)) select.value = previous;
  if (!state.checkpoints.size) say('No checkpoints under the runs folder yet: train one with ddpm train.', false);
  checkpointChanged(previous !== select.value);
}

function checkpointChanged(reset = true) {
  const c = state.checkpoints.get($('checkpoint').value);
  $('generate').disabled = !c || !!state.abort;
  if (!c) return;
  const m = c.model;
  $('checkpoint-info').textContent =
    `${m.imageSize}×${m.imageSize}×${m.channels}, T = ${m.timesteps}` +
    (m.numClasses ? `, ${m.numClasses} classes` : '') + (m.hasEma ? ', EMA' : '') + `, epoch ${c.epoch}` +
    (m.distilled
      ? `, distilled: ${m.distilled.timesteps.length} DDIM step(s), guidance ${m.distilled.guidance} built in`
      : '');
  $('steps').max = m.timesteps;
  $('ema').disabled = !m.hasEma;
  $('class-row').hidden = !m.numClasses;
  $('to-class-label').hidden = !m.numClasses;
  if (drawing.size !== m.imageSize || drawing.channels !== m.channels) resetDrawing(m.imageSize, m.channels);
  if (!reset) return;
  $('steps').value = m.distilled ? m.distilled.timesteps.length : Math.min(m.timesteps, 100);
  if (m.distilled) {
    $('sampler').value = 'ddim';
    $('eta').value = 0;
    $('eta-label').hidden = false;
    $('guidance').value = m.distilled.guidance;
  }
  $('ema').checked = m.hasEma;
  const cls = $('class');
  cls.replaceChildren(new Option('none (unconditional)', ''));
  for (let k = 0; k < m.numClasses; k++) cls.add(new Option(String(k), String(k)));
  const to = $('to-class');
  to.replaceChildren(new Option('the same', ''));
  for (let k = 0; k < m.numClasses; k++) to.add(new Option(String(k), String(k)));
}
$('checkpoint').addEventListener('change', () => checkpointChanged(true));
$('sampler').addEventListener('change', () => { $('eta-label').hidden = $('sampler').value !== 'ddim'; });

function say(text, error) {
  $('message').textContent = text;
  $('message').classList.toggle('error', !!error);
}

function setLive(phase, frames) {
  $('live').dataset.state = phase;
  if (frames !== undefined) $('live').dataset.frames = String(frames);
}

const mode = () => document.querySelector('input[name="mode"]:checked').value;

// What each mode shows: the drawing for complete and clean up, the strength or RePaint's r and j, the interpolation's
// other end.
function modeChanged() {
  const m = mode();
  $('draw-panel').hidden = m !== 'inpaint' && m !== 'img2img';
  $('edit-row').hidden = m !== 'inpaint' && m !== 'img2img';
  $('strength-label').hidden = m !== 'img2img';
  $('resample-label').hidden = $('jump-label').hidden = m !== 'inpaint';
  $('interp-row').hidden = m !== 'interpolate';
  $('count').closest('label').hidden = $('rows').closest('label').hidden = m === 'interpolate';
  $('final-figure').classList.toggle('strip', m === 'interpolate');
}
for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', modeChanged);
$('strength').addEventListener('input', () => {
  $('strength-value').textContent = Number($('strength').value).toFixed(2);
});

function requestBody() {
  const body = {
    checkpoint: $('checkpoint').value,
    sampler: $('sampler').value,
    steps: Number($('steps').value),
    count: Number($('count').value),
    rows: Number($('rows').value),
    seed: Number($('seed').value),
    ema: $('ema').checked,
    clipX0: $('clip').checked,
  };
  if (body.sampler === 'ddim') body.eta = Number($('eta').value);
  if (!$('class-row').hidden && $('class').value !== '') {
    body.class = Number($('class').value);
    body.guidance = Number($('guidance').value);
  }
  const m = mode();
  if (m !== 'sample') body.mode = m;
  if (m === 'inpaint') {
    Object.assign(body, {
      image: drawingPng(), mask: maskPng(), resample: Number($('resample').value), jump: Number($('jump').value),
    });
  } else if (m === 'img2img') {
    Object.assign(body, { image: drawingPng(), strength: Number($('strength').value) });
  } else if (m === 'interpolate') {
    delete body.count;
    body.frames = Number($('frames').value);
    body.rows = body.frames;
    body.toSeed = Number($('to-seed').value);
    if (body.class !== undefined && $('to-class').value !== '') body.toClass = Number($('to-class').value);
  }
  return body;
}

// ---------- drawing: the model's resolution, shown large ----------
// pixels: the image (RGBA, opaque); drawn: pixels the brush or eraser touched; region: pixels marked to be completed.
const drawing = { size: 0, channels: 1, pixels: null, drawn: null, region: null, tool: 'brush', last: null };

function resetDrawing(size, channels) {
  Object.assign(drawing, { size, channels, last: null });
  drawing.pixels = new Uint8ClampedArray(size * size * 4);
  for (let i = 3; i < drawing.pixels.length; i += 4) drawing.pixels[i] = 255;
  drawing.drawn = new Uint8Array(size * size);
  drawing.region = new Uint8Array(size * size);
  for (const id of ['draw', 'overlay']) { $(id).width = size; $(id).height = size; }
  $('brush-color').hidden = channels !== 3;
  renderDrawing();
  updateLinks();
}

function renderDrawing() {
  const s = drawing.size;
  $('draw').getContext('2d').putImageData(new ImageData(drawing.pixels, s, s), 0, 0);
  const overlay = new ImageData(s, s);
  drawing.region.forEach((r, i) => { if (r) overlay.data.set([255, 80, 80, 120], 4 * i); });
  $('overlay').getContext('2d').putImageData(overlay, 0, 0);
}

// The drawing as PNG (what "complete" and "clean up" send), and the mask: white = keep. With a marked region the
// region is completed and everything else kept; without one, what was drawn is kept and the rest completed.
function drawingPng() { return png(drawing.pixels); }
function maskPng() {
  const keep = drawing.region.some(r => r) ? drawing.region.map(r => 1 - r) : drawing.drawn;
  const rgba = new Uint8ClampedArray(keep.length * 4);
  keep.forEach((k, i) => rgba.set([255 * k, 255 * k, 255 * k, 255], 4 * i));
  return png(rgba);
}
function png(rgba) {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = drawing.size;
  canvas.getContext('2d').putImageData(new ImageData(rgba, drawing.size, drawing.size), 0, 0);
  return canvas.toDataURL('image/png');
}
function updateLinks() {
  $('drawing-link').href = drawingPng();
  $('mask-link').href = maskPng();
}

// A round brush of radius r model pixels (0 = one pixel), stamped along the stroke every quarter pixel.
function stamp(x, y) {
  const s = drawing.size, r = Math.max(0, Number($('brush-size').value) || 0);
  const cx = Math.floor(x), cy = Math.floor(y);
  const hex = $('brush-color').value;
  const colour = drawing.channels === 3 ? [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16)) : [255, 255, 255];
  for (let dy = -r; dy <= r; dy++) {
    for (let dx = -r; dx <= r; dx++) {
      const px = cx + dx, py = cy + dy;
      if (px < 0 || py < 0 || px >= s || py >= s || dx * dx + dy * dy > r * r + r) continue;
      const i = py * s + px;
      if (drawing.tool === 'region') { drawing.region[i] = 1; continue; }
      drawing.pixels.set(drawing.tool === 'brush' ? colour : [0, 0, 0], 4 * i);
      drawing.drawn[i] = 1;
    }
  }
}
function pointAt(event) {
  const box = $('overlay').getBoundingClientRect();
  return [(event.clientX - box.left) / box.width * drawing.size, (event.clientY - box.top) / box.height * drawing.size];
}
$('overlay').addEventListener('pointerdown', event => {
  event.preventDefault();
  $('overlay').setPointerCapture(event.pointerId);
  drawing.last = pointAt(event);
  stamp(...drawing.last);
  renderDrawing();
});
$('overlay').addEventListener('pointermove', event => {
  if (!drawing.last) return;
  const [x0, y0] = drawing.last, [x1, y1] = pointAt(event);
  const n = Math.max(1, Math.ceil(4 * Math.hypot(x1 - x0, y1 - y0)));
  for (let k = 1; k <= n; k++) stamp(x0 + (x1 - x0) * k / n, y0 + (y1 - y0) * k / n);
  drawing.last = [x1, y1];
  renderDrawing();
});
for (const end of ['pointerup', 'pointercancel']) {
  $('overlay').addEventListener(end, () => {
    if (!drawing.last) return;
    drawing.last = null;
    updateLinks();
  });
}
for (const tool of document.querySelectorAll('.tool')) {
  tool.addEventListener('click', () => {
    drawing.tool = tool.dataset.tool;
    for (const t of document.querySelectorAll('.tool')) t.classList.toggle('active', t === tool);
  });
}
$('clear-drawing').addEventListener('click', () => resetDrawing(drawing.size, drawing.channels));

$('generate-form').addEventListener('submit', async event => {
  event.preventDefault();
  if (state.abort) return;
  const body = requestBody();
  const abort = new AbortController();
  state.abort = abort;
  $('generate').disabled = true;
  $('cancel').disabled = false;
  $('download').hidden = true;
  $('final').removeAttribute('src');
  $('progress').value = 0;
  say('', false);
  let frames = 0;
  setLive('running', 0);
  $('status').textContent = 'starting…';
  try {
    const response = await fetch('/api/generate', {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body), signal: abort.signal,
    });
    if (!response.ok) {
      const retry = response.headers.get('Retry-After');
      throw new Error(await problem(response) + (retry ? ` (Retry-After: ${retry} s)` : ''));
    }
    let steps = body.steps, count = body.count;
    for await (const { event: name, data } of events(response)) {
      if (name === 'start') {
        steps = data.steps;
        count = data.count;
        $('progress').max = steps;
      } else if (name === 'frame') {
        frames++;
        $('frame-xt').src = data.xt;
        $('frame-x0').src = data.x0;
        $('progress').value = data.step;
        $('status').textContent = `step ${data.step}/${data.steps} · t = ${data.timestep} · frames ${frames}`;
        setLive('running', frames);
      } else if (name === 'done') {
        $('progress').value = steps;
        $('final').src = data.png;
        $('frame-xt').src = data.png;
        const link = $('download');
        link.href = data.png;
        link.download = `ddpm-${mode()}-seed${body.seed}-${count}x${steps}.png`;
        link.hidden = false;
        $('status').textContent =
          `done: ${count} images, ${data.steps} steps in ${data.seconds.toFixed(2)} s · frames ${frames}`;
        setLive('done', frames);
      } else if (name === 'error') {
        throw new Error(data.message);
      }
    }
    if ($('live').dataset.state === 'running') throw new Error('the stream ended early');
  } catch (e) {
    if (abort.signal.aborted) {
      $('status').textContent = `cancelled · frames ${frames}`;
      setLive('cancelled', frames);
    } else {
      say(e.message, true);
      $('status').textContent = 'failed';
      setLive('error', frames);
    }
  } finally {
    state.abort = null;
    $('cancel').disabled = true;
    checkpointChanged(false);
  }
});
$('cancel').addEventListener('click', () => state.abort?.abort());
window.addEventListener('pagehide', () => state.abort?.abort());

// Server-Sent Events from a fetch body (EventSource cannot POST): "event: NAME\ndata: JSON\n\n".
async function* events(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) name = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      yield { event: name, data: JSON.parse(data) };
    }
  }
}

// ---------- runs ----------
async function refreshRuns() {
  try {
    state.runs = await getJson('/api/runs');
  } catch (e) { say(e.message, true); return; }
  fillCheckpoints();
  const list = $('run-list');
  list.replaceChildren();
  for (const run of state.runs) {
    const item = document.createElement('li');
    item.dataset.id = run.id;
    item.classList.toggle('selected', state.run === run.id);
    const latest = run.checkpoints[0];
    item.append(run.name);
    const small = document.createElement('small');
    small.textContent = latest ? `${run.checkpoints.length} checkpoint(s), step ${latest.step}` : 'no checkpoint';
    item.append(small);
    item.addEventListener('click', () => selectRun(run.id));
    list.append(item);
  }
  if (!state.run && state.runs.length && !$('view-runs').hidden) selectRun(state.runs[0].id);
}

function selectRun(id) {
  state.run = id;
  state.loss = { offset: 0, steps: [], losses: [] };
  for (const t of state.timers) clearInterval(t);
  for (const li of $('run-list').children) li.classList.toggle('selected', li.dataset.id === id);
  $('run-detail').hidden = false;
  loadRun(id);
  pollLoss(id);
  state.timers = [setInterval(() => pollLoss(id), 2000), setInterval(() => loadRun(id), 5000)];
}

async function loadRun(id) {
  if ($('view-runs').hidden || state.run !== id) return;
  let d;
  try { d = await getJson(`/api/runs/${id}`); } catch (e) { $('run-summary').textContent = e.message; return; }
  if (state.run !== id) return;
  $('run-name').textContent = d.run.name;
  $('run-config').textContent = d.config || '(no config.yaml)';
  const epochs = d.epochs;
  let summary = `${d.run.checkpoints.length} checkpoint(s)`;
  if (epochs && epochs.rows.length) {
    const col = name => epochs.columns.indexOf(name);
    const last = epochs.rows[epochs.rows.length - 1];
    if (col('images_per_s') >= 0 && last[col('images_per_s')] != null) summary += ` · ${last[col('images_per_s')].toFixed(1)} img/s (last epoch)`;
    if (col('step') >= 0) summary += ` · step ${last[col('step')]}`;
  }
  if (d.tensorBoard) summary += ' · TensorBoard: tensorboard --logdir <runs folder>';
  $('run-summary').textContent = summary;
  table($('epochs'), epochs ? epochs.columns : [], epochs ? epochs.rows.slice(-15) : []);
  const img = $('run-sample');
  if (d.run.latestSample) img.src = `${fileUrl(d.run.latestSample)}?v=${encodeURIComponent(d.run.modifiedUtc)}`;
  else img.removeAttribute('src');
  const rows = d.evaluation ? flatten(d.evaluation).slice(0, 40) : [];
  table($('evaluation'), rows.length ? ['eval.json', 'value'] : [], rows);
}

function table(element, columns, rows) {
  element.replaceChildren();
  if (!columns.length) return;
  const head = element.insertRow();
  for (const c of columns) { const th = document.createElement('th'); th.textContent = c; head.append(th); }
  for (const r of rows) {
    const tr = element.insertRow();
    for (const v of r) tr.insertCell().textContent = typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toPrecision(5)) : (v ?? '');
  }
}

// The numbers of eval.json as dotted keys (arrays left out: curves and histograms are in the eval folder's PNGs).
function flatten(node, prefix = '', out = []) {
  for (const [k, v] of Object.entries(node)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (typeof v === 'number') out.push([key, v]);
    else if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
  }
  return out;
}

async function pollLoss(id) {
  if ($('view-runs').hidden || state.run !== id) return;
  const loss = state.loss;
  try {
    for (;;) {
      const chunk = await getJson(`/api/runs/${id}/loss?offset=${loss.offset}`);
      if (state.run !== id) return;
      if (chunk.offset < loss.offset) { loss.steps = []; loss.losses = []; }
      loss.offset = chunk.offset;
      loss.steps.push(...chunk.steps);
      loss.losses.push(...chunk.losses);
      if (!chunk.more) break;
    }
  } catch (e) { $('loss-info').textContent = e.message; return; }
  drawLoss();
}

function drawLoss() {
  const { steps, losses } = state.loss;
  const canvas = $('loss-chart');
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  const points = steps.map((s, i) => [s, losses[i]]).filter(p => p[1] != null && p[1] > 0);
  if (points.length < 2) { $('loss-info').textContent = points.length ? '1 step logged' : 'no loss logged yet'; return; }
  const pad = 40, w = canvas.width - pad - 10, h = canvas.height - 30;
  const x0 = points[0][0], x1 = points[points.length - 1][0];
  const ly = points.map(p => Math.log10(p[1]));
  const y0 = Math.min(...ly), y1 = Math.max(...ly);
  const X = s => pad + (x1 > x0 ? (s - x0) / (x1 - x0) : 0) * w;
  const Y = v => 10 + (y1 > y0 ? (y1 - v) / (y1 - y0) : 0.5) * h;
  g.strokeStyle = '#d0d5dd'; g.fillStyle = '#667085'; g.font = '11px system-ui';
  g.beginPath(); g.moveTo(pad, 10); g.lineTo(pad, 10 + h); g.lineTo(pad + w, 10 + h); g.stroke();
  g.fillText(Math.pow(10, y1).toPrecision(3), 2, 16);
  g.fillText(Math.pow(10, y0).toPrecision(3), 2, 10 + h);
  g.fillText(`step ${x0}`, pad, canvas.height - 4);
  g.fillText(`step ${x1}`, pad + w - 60, canvas.height - 4);
  g.strokeStyle = 'rgba(53, 89, 224, .25)';
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo : g.moveTo).call(g, X(p[0]), Y(ly[i])));
  g.stroke();
  // A debiased exponential moving average, as TensorBoard smooths; short logs are smoothed less (none under 20 points).
  const weight = Math.min(0.98, Math.max(0, 1 - 20 / points.length));
  g.strokeStyle = '#3559e0'; g.lineWidth = 2; g.beginPath();
  let avg = 0;
  points.forEach((p, i) => {
    avg = weight * avg + (1 - weight) * ly[i];
    const debiased = weight > 0 ? avg / (1 - Math.pow(weight, i + 1)) : ly[i];
    (i ? g.lineTo : g.moveTo).call(g, X(p[0]), Y(debiased));
  });
  g.stroke(); g.lineWidth = 1;
  $('loss-info').textContent = `${points.length} steps logged, last loss ${points[points.length - 1][1].toPrecision(4)} (log scale; line: smoothed)`;
}

modeChanged();
init();
