// layercal explorer, part 1 of 3: the data and the metrics. The page's code is three files
// (explorer_metrics.js, explorer_rows.js, explorer.js), joined in this order inside one function
// scope by analyze/explore/page.py. This part decodes the data (one gzip blob,
// analyze/explore/payload.py) and recomputes the metrics of a selection with the formulas of
// analyze/calibration (tested against them in tests/analyze/explore/test_page.py).
'use strict';
const $ = (id) => document.getElementById(id);
const state = { depth: 0, category: 'all', subject: 'all', question: null, renders: 0 };
let doc = null;
const views = {};
const bootCache = new Map();

async function loadPayload() {
  const text = $('layercal-data').textContent.trim();
  const bin = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  const stream = new Blob([bin]).stream().pipeThrough(new DecompressionStream('gzip'));
  const buf = await new Response(stream).arrayBuffer();
  const n = new DataView(buf).getUint32(0, true);
  const d = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 4, n)));
  const types = { f4: Float32Array, f8: Float64Array, u1: Uint8Array, i4: Int32Array };
  d.stores.forEach((s) => { s.arr = {}; });
  for (const r of d.arrays) {
    const count = r.shape.reduce((a, b) => a * b, 1);
    d.stores[r.store].arr[r.name] = new types[r.dtype](buf, 4 + n + r.offset, count);
  }
  return d;
}

// Equal-width bin of a confidence, as analyze.calibration.bin_index: edges i / m, the last
// bin closed.
function binOf(c, m) {
  let b = Math.floor(c * m);
  if (b > m) b = m;
  while (b > 0 && b / m > c) b -= 1;
  while (b + 1 <= m && (b + 1) / m <= c) b += 1;
  return Math.min(b, m - 1);
}

// Per question and depth (layer-major, index l * n + i): the terms of
// analyze.calibration.per_example_terms (correct, conf, brier, nll) and the bins.
function prepare(s) {
  const n = s.n, L = s.layers.length, K = s.letters.length, m = s.bins, H = doc.hist_bins;
  const z = s.arr.logits, mask = s.arr.mask, label = s.arr.label;
  Object.assign(s, { L: L, K: K, index: new Map() });
  for (const key of ['conf', 'brier', 'nll', 'mass']) s[key] = new Float64Array(L * n);
  for (const key of ['correct', 'pred', 'bin', 'hbin']) s[key] = new Uint8Array(L * n);
  s.probs = new Float64Array(n * L * K);
  for (let i = 0; i < n; i++) {
    s.index.set(s.questions.id[i], i);
    for (let l = 0; l < L; l++) {
      const off = (i * L + l) * K, j = l * n + i;
      let top = -Infinity;
      for (let k = 0; k < K; k++) if (mask[i * K + k] && z[off + k] > top) top = z[off + k];
      let sum = 0;
      for (let k = 0; k < K; k++) {
        const e = mask[i * K + k] ? Math.exp(z[off + k] - top) : 0;
        s.probs[off + k] = e;
        sum += e;
      }
      let best = 0, conf = -1, brier = 0;
      for (let k = 0; k < K; k++) {
        const p = s.probs[off + k] / sum;
        s.probs[off + k] = p;
        if (p > conf) { conf = p; best = k; }
        const d = p - (k === label[i] ? 1 : 0);
        brier += mask[i * K + k] ? d * d : 0;
      }
      s.conf[j] = conf;
      s.pred[j] = best;
      s.correct[j] = best === label[i] ? 1 : 0;
      s.brier[j] = brier;
      s.nll[j] = -Math.log(Math.max(s.probs[off + label[i]], 1e-12));
      s.mass[j] = s.arr.mass[i * L + l];
      s.bin[j] = binOf(conf, m);
      s.hbin[j] = binOf(conf, H);
    }
  }
}

// ---- metrics of a selection ------------------------------------------------------------
// Sums over the selected questions at depth l, each weighted by w (null: once each).
function sums(s, sel, l, w) {
  const m = s.bins, n = s.n;
  const out = { n: 0, correct: 0, conf: 0, brier: 0, nll: 0, mass: 0,
    count: new Float64Array(m), sconf: new Float64Array(m), scorrect: new Float64Array(m) };
  for (let t = 0; t < sel.length; t++) {
    const wt = w ? w[t] : 1;
    if (wt === 0) continue;
    const j = l * n + sel[t], b = s.bin[j];
    out.n += wt;
    out.correct += wt * s.correct[j];
    out.conf += wt * s.conf[j];
    out.brier += wt * s.brier[j];
    out.nll += wt * s.nll[j];
    out.mass += wt * s.mass[j];
    out.count[b] += wt;
    out.sconf[b] += wt * s.conf[j];
    out.scorrect[b] += wt * s.correct[j];
  }
  return out;
}

// analyze.calibration.metrics_from_terms of the sums (ece_from_sums, mce_from_sums).
function metricsOf(s, x) {
  let ece = 0, mce = -Infinity, any = false;
  for (let b = 0; b < s.bins; b++) {
    const gap = Math.abs(x.scorrect[b] - x.sconf[b]);
    ece += gap;
    if (x.count[b] >= s.mce_min_count) { any = true; mce = Math.max(mce, gap / x.count[b]); }
  }
  return {
    accuracy: x.correct / x.n, ece: ece / x.n, mce: any ? mce : NaN, brier: x.brier / x.n,
    nll: x.nll / x.n, mean_confidence: x.conf / x.n, option_mass: x.mass / x.n,
  };
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return function () {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// numpy's nanquantile (linear interpolation) of values, nan left out.
function quantile(values, q) {
  const v = values.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const h = (v.length - 1) * q, lo = Math.floor(h);
  return lo + 1 < v.length ? v[lo] + (h - lo) * (v[lo + 1] - v[lo]) : v[lo];
}

// Percentile bootstrap intervals at every depth, the same resamples for all depths: {metric:
// [[lo, hi] per depth]}; cached per selection.
function bootstrap(s, sel, key) {
  if (bootCache.has(key)) return bootCache.get(key);
  const B = doc.page_boot, rng = mulberry32(s.seed + 1), out = {};
  const boots = doc.page_metrics.map(() => Array.from({ length: s.L }, () => []));
  const w = new Uint16Array(sel.length);
  for (let b = 0; b < B && sel.length; b++) {
    w.fill(0);
    for (let t = 0; t < sel.length; t++) w[Math.floor(rng() * sel.length)] += 1;
    for (let l = 0; l < s.L; l++) {
      const m = metricsOf(s, sums(s, sel, l, w));
      doc.page_metrics.forEach((name, k) => boots[k][l].push(m[name]));
    }
  }
  doc.page_metrics.forEach((name, k) => {
    out[name] = boots[k].map((v) => [quantile(v, 0.025), quantile(v, 0.975)]);
  });
  bootCache.set(key, out);
  return out;
}

