// The drawing page: strokes on a black canvas (white ink, like MNIST), sent as PNG to /v1/predict
// after each stroke and, throttled, while drawing. Plain JS, no library, nothing from the network.
'use strict';
const pad = document.getElementById('pad');
const ctx = pad.getContext('2d');
const statusEl = document.getElementById('status');
let drawing = false, last = null, inFlight = false, again = false, inked = false;

function clearPad() {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  document.getElementById('digit').textContent = '\u2013';
  document.getElementById('confidence').textContent = '';
  bars('probs', [], []);
  bars('experts', [], []);
  document.getElementById('seen').getContext('2d').clearRect(0, 0, 56, 56);
  statusEl.textContent = 'draw with the mouse, a pen or a finger';
}

function point(e) {
  const r = pad.getBoundingClientRect();
  return { x: (e.clientX - r.left) * pad.width / r.width, y: (e.clientY - r.top) * pad.height / r.height };
}

function stroke(a, b) {
  ctx.strokeStyle = '#fff';
  ctx.lineWidth = 20;
  ctx.lineCap = 'round';
  ctx.lineJoin = 'round';
  ctx.beginPath();
  ctx.moveTo(a.x, a.y);
  ctx.lineTo(b.x, b.y);
  ctx.stroke();
  inked = true;
}

pad.addEventListener('pointerdown', e => { drawing = true; last = point(e); stroke(last, last); pad.setPointerCapture(e.pointerId); });
pad.addEventListener('pointermove', e => { if (!drawing) return; const p = point(e); stroke(last, p); last = p; predict(); });
['pointerup', 'pointercancel'].forEach(t => pad.addEventListener(t, () => { if (drawing) { drawing = false; predict(); } }));
document.getElementById('clear').addEventListener('click', clearPad);

// One request at a time; strokes drawn meanwhile are sent once it returns.
function predict() {
  if (!inked) return;
  if (inFlight) { again = true; return; }
  inFlight = true;
  pad.toBlob(async blob => {
    try {
      const url = picker.hidden ? '/v1/predict' : '/v1/predict?model=' + encodeURIComponent(picker.value);
      const res = await fetch(url, { method: 'POST', body: blob, headers: { 'Content-Type': 'image/png' } });
      const j = await res.json();
      if (!res.ok) throw new Error(j.error || res.statusText);
      show(j);
      statusEl.textContent = j.warning || '';  // an image without ink is refused (422) with the reason
    } catch (err) {
      statusEl.textContent = 'error: ' + err.message;
    } finally {
      inFlight = false;
      if (again) { again = false; predict(); }
    }
  }, 'image/png');
}

function bars(id, values, labels, marks) {
  const el = document.getElementById(id);
  el.innerHTML = '';
  values.forEach((v, i) => {
    const row = document.createElement('div');
    row.className = 'bar' + (marks && marks[i] ? ' ' + marks[i] : '');
    row.dataset.index = i;
    row.innerHTML = `<span>${labels[i]}</span><div class="track"><div class="fill" style="width:${(100 * v).toFixed(1)}%"></div></div>` +
      `<span>${(100 * v).toFixed(1)}%${marks && marks[i] === 'chosen' ? ' w ' + marks.weights[i].toFixed(2) : ''}</span>`;
    el.appendChild(row);
  });
}

function show(j) {
  document.getElementById('digit').textContent = j.label && j.label !== String(j.digit) ? `${j.digit} ${j.label}` : j.digit;
  document.getElementById('confidence').textContent = (100 * j.probabilities[j.digit]).toFixed(1) + '%';
  bars('probs', j.probabilities, j.probabilities.map((_, i) => String(i)), j.probabilities.map((_, i) => i === j.digit ? 'top' : ''));
  const marks = j.gate_probs.map(() => '');
  marks.weights = j.gate_probs.map(() => 0);
  j.experts.forEach(e => { marks[e.id] = 'chosen'; marks.weights[e.id] = e.weight; });
  bars('experts', j.gate_probs, j.gate_probs.map((_, i) => '#' + i), marks);
  document.getElementById('topk').textContent = `(top-${j.experts.length} chosen, with their combine weights)`;
  const seen = document.getElementById('seen').getContext('2d');
  const img = seen.createImageData(28, 28);
  j.input.forEach((v, i) => { const g = Math.round(255 * v); img.data.set([g, g, g, 255], 4 * i); });
  const tmp = document.createElement('canvas');
  tmp.width = tmp.height = 28;
  tmp.getContext('2d').putImageData(img, 0, 0);
  seen.imageSmoothingEnabled = false;
  seen.drawImage(tmp, 0, 0, 56, 56);
}

fetch('/v2').then(r => r.json()).then(s => { document.getElementById('model').textContent = `${s.name} ${s.version} - KServe v2 at /v2, metrics at /metrics`; }).catch(() => {});

// With a model repository (serve --model-repository), the user picks the model; one model: no picker.
const picker = document.getElementById('model-pick');
fetch('/v2/repository/index', { method: 'POST', body: '{"ready":true}', headers: { 'Content-Type': 'application/json' } })
  .then(r => (r.ok ? r.json() : []))
  .then(index => {
    const names = [...new Set(index.map(e => e.name))];
    if (names.length < 2) return;
    names.forEach(n => picker.add(new Option(n, n)));
    picker.hidden = false;
    picker.addEventListener('change', predict);
  })
  .catch(() => {});
clearPad();
