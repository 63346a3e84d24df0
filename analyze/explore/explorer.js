// layercal explorer: the page's code. The data (one gzip blob, analyze/explore/payload.py) and
// the Vega-Lite specifications (analyze/explore/specs.py) are inlined in the page; this code
// decodes them, recomputes the panels for a filtered selection with the formulas of
// analyze/calibration (tested against them in tests/analyze/explore/test_page.py) and feeds the
// charts through vega-embed's View API.
(function () {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const state = { depth: 0, category: 'all', subject: 'all', question: null, renders: 0 };
  let doc = null;
  const views = {};
  const bootCache = new Map();

  // ---- data ----------------------------------------------------------------------------
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

  // ---- the selection ---------------------------------------------------------------------
  const filtered = () => state.category !== 'all' || state.subject !== 'all';

  function selection(s) {
    const q = s.questions, out = [];
    const cat = s.categories.indexOf(state.category), sub = s.subjects.indexOf(state.subject);
    for (let i = 0; i < s.n; i++) {
      if (state.category !== 'all' && q.category[i] !== cat) continue;
      if (state.subject !== 'all' && q.subject[i] !== sub) continue;
      out.push(i);
    }
    return Int32Array.from(out);
  }

  const depthOf = (s) => Math.min(state.depth, s.L - 1);
  const selKey = (si) => `${si}|${state.category}|${state.subject}`;

  // What every panel shows of store s: {n, at: metrics at the depth, ci, rel, hist, over}.
  function view(s, si) {
    const l = depthOf(s);
    if (!filtered()) {
      const M = s.metrics, ci = {}, at = {};
      for (const name of s.panel) {
        at[name] = M[name][l];
        if (M[name + '_lo']) ci[name] = [M[name + '_lo'][l], M[name + '_hi'][l]];
      }
      const r = s.reliability;
      return { n: s.n, l: l, at: at, ci: ci, count: r.count[l], sconf: r.sum_conf[l],
        scorrect: r.sum_correct[l], hist: s.conf_hist[l], chance: s.landmarks.chance_accuracy };
    }
    const sel = selection(s);
    if (!sel.length) return { n: 0, l: l };
    const x = sums(s, sel, l, null), at = metricsOf(s, x), boot = bootstrap(s, sel, selKey(si));
    const ci = {};
    for (const name of doc.page_metrics) ci[name] = boot[name][l];
    const hist = new Array(doc.hist_bins).fill(0);
    let chance = 0;
    for (const i of sel) {
      hist[s.hbin[l * s.n + i]] += 1;
      let k = 0;
      for (let c = 0; c < s.K; c++) k += s.arr.mask[i * s.K + c];
      chance += 1 / k;
    }
    return { n: sel.length, l: l, at: at, ci: ci, count: Array.from(x.count),
      sconf: Array.from(x.sconf), scorrect: Array.from(x.scorrect), hist: hist,
      chance: chance / sel.length, sel: sel };
  }

  // ---- rows of the charts ----------------------------------------------------------------
  function reliabilityRows(views_) {
    const rows = [], S = doc.stores.length;
    doc.stores.forEach((s, si) => {
      const v = views_[si], m = s.bins, w = 1 / m;
      if (!v.n) return;
      for (let b = 0; b < m; b++) {
        const c = v.count[b];
        if (!c) continue;
        const acc = v.scorrect[b] / c, conf = v.sconf[b] / c;
        const x0 = b * w + (si / S) * w * 0.9 + 0.05 * w, x1 = x0 + (w * 0.9) / S;
        rows.push({ store: s.name, bin: b, x0: x0, x1: x1, mid: (x0 + x1) / 2, accuracy: acc,
          confidence: conf, count: c,
          desc: `store=${si};depth=${s.layers[v.l]};bin=${b};count=${c};accuracy=${acc};confidence=${conf}` });
      }
    });
    return rows;
  }

  function histRows(views_) {
    const rows = [], S = doc.stores.length, H = doc.hist_bins, w = 1 / H;
    doc.stores.forEach((s, si) => {
      const v = views_[si];
      if (!v.n) return;
      v.hist.forEach((c, b) => {
        if (!c) return;
        const x0 = b * w + (si / S) * w, share = c / v.n;
        rows.push({ store: s.name, x0: x0, x1: x0 + w / S, share: share, count: c,
          desc: `store=${si};bin=${b};count=${c};share=${share}` });
      });
    });
    return rows;
  }

  function depthRows(views_) {
    const rows = [], marks = [], phases = [], chance = [], cursor = [];
    const metrics = [...new Set(doc.stores.flatMap((s) => s.depth_metrics))];
    doc.stores.forEach((s, si) => {
      const v = views_[si], lm = s.landmarks;
      if (!v.n) return;
      let over = null;
      if (filtered()) over = overDepth(s, v.sel, si);
      for (const metric of s.depth_metrics) {
        for (let l = 0; l < s.L; l++) {
          const row = { store: s.name, metric: metric, layer: s.layers[l] };
          if (over) {
            if (!(metric in over)) continue;
            Object.assign(row, { value: over[metric][l], lo: over[metric + '_ci'][l][0],
              hi: over[metric + '_ci'][l][1] });
          } else {
            const M = s.metrics;
            Object.assign(row, { value: M[metric][l], lo: (M[metric + '_lo'] || [])[l],
              hi: (M[metric + '_hi'] || [])[l] });
          }
          rows.push(row);
        }
        for (const [kind, key] of [['rise', 'rise_layer'], ['plateau', 'plateau_layer']]) {
          if (lm[key] !== null && lm[key] !== undefined) {
            marks.push({ store: s.name, metric: metric, layer: lm[key], kind: kind,
              label: `${kind} (whole store)` });
          }
        }
        const cp = lm.correction_phase;
        if (cp) phases.push({ store: s.name, metric: metric, start: cp.start, end: cp.end });
      }
      chance.push({ store: s.name, value: v.chance });
    });
    for (const metric of metrics) {
      cursor.push({ metric: metric, layer: doc.stores[0].layers[depthOf(doc.stores[0])] });
    }
    return { depth: rows, marks: marks, phases: phases, chance: chance, cursor: cursor };
  }

  // The page's metrics at every depth for a selection, with their intervals.
  function overDepth(s, sel, si) {
    const boot = bootstrap(s, sel, selKey(si)), out = {};
    for (const name of doc.page_metrics) {
      out[name] = [];
      out[name + '_ci'] = boot[name];
    }
    for (let l = 0; l < s.L; l++) {
      const m = metricsOf(s, sums(s, sel, l, null));
      for (const name of doc.page_metrics) out[name].push(m[name]);
    }
    return out;
  }

  function questionPoints(views_) {
    const rows = [];
    doc.stores.forEach((s, si) => {
      const sel = views_[si].sel || Int32Array.from({ length: s.n }, (_, i) => i);
      const last = s.L - 1;
      for (const i of sel) {
        const jitter = (((i * 2654435761) >>> 0) % 1000) / 1000 - 0.5;
        const c = s.arr.commitment[i], j = last * s.n + i;
        rows.push({ store: s.name, s: si, i: i, id: s.questions.id[i],
          x: s.layers[c] + 0.6 * jitter, y: s.conf[j], outcome: s.correct[j] ? 'right' : 'wrong',
          desc: `store=${si};question=${i};id=${s.questions.id[i]}` });
      }
    });
    return rows;
  }

  // ---- the metrics panel -----------------------------------------------------------------
  const fmt = (x) => (x === null || x === undefined || Number.isNaN(x) ? '—' : x.toFixed(3));

  function renderPanel(views_) {
    const names = [...new Set(doc.stores.flatMap((s) => s.panel))];
    const head = doc.stores.map((s, si) => {
      const v = views_[si];
      return `<th>${esc(s.name)}<br><span class="ci">depth ${s.layers[v.l]}, n = ${v.n}</span></th>`;
    });
    const body = names.map((name) => {
      const cells = doc.stores.map((s, si) => {
        const v = views_[si], value = v.n ? v.at[name] : undefined;
        if (value === undefined) {
          const why = v.n ? 'computed for all questions only' : 'no question selected';
          return `<td class="na" title="${why}" data-store="${si}" data-metric="${name}">—</td>`;
        }
        const ci = v.ci[name] || [NaN, NaN];
        return `<td data-store="${si}" data-metric="${name}" data-value="${value}" ` +
          `data-lo="${ci[0]}" data-hi="${ci[1]}">${fmt(value)} ` +
          `<span class="ci">[${fmt(ci[0])}, ${fmt(ci[1])}]</span></td>`;
      });
      return `<tr><td>${esc(TITLES[name] || name)}</td>${cells.join('')}</tr>`;
    });
    $('panel').innerHTML = `<table><tr><th>metric [95% interval]</th>${head.join('')}</tr>` +
      body.join('') + '</table>';
  }

  const TITLES = { accuracy: 'accuracy', ece: 'ECE', smece: 'smECE', mce: 'MCE', brier: 'Brier',
    nll: 'NLL (nats)', mean_confidence: 'mean confidence', option_mass: 'option mass' };

  function esc(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;',
      '"': '&quot;' }[c]));
  }

  // ---- the question view -----------------------------------------------------------------
  function renderQuestion() {
    const id = state.question, prob = [], marks = [], depths = [];
    let shown = false;
    doc.stores.forEach((s, si) => {
      const i = s.index.get(id);
      if (i === undefined) {
        if (id !== null) depths.push(`${esc(s.name)}: not in this store`);
        return;
      }
      const last = s.L - 1, label = s.arr.label[i], answer = s.pred[last * s.n + i];
      const choices = s.questions.choices[i];
      if (!shown) {
        shown = true;
        const q = s.questions;
        $('question-meta').textContent = `${id} · ${s.subjects[q.subject[i]]} · ` +
          `${s.categories[q.category[i]]}`;
        $('question-text').textContent = q.text[i];
        $('question-options').innerHTML = choices.map((c, k) => {
          const cls = [k === label ? 'correct' : '', k === answer ? 'answer' : ''].join(' ');
          return `<li class="${cls}" data-option="${k}">${esc(c)}${k === label ? ' ✓' : ''}</li>`;
        }).join('');
      }
      const commit = s.layers[s.arr.commitment[i]], falls = [];
      for (let l = 0; l < s.L; l++) {
        for (let k = 0; k < choices.length; k++) {
          prob.push({ store: s.name, option: `${s.letters[k]}. ${choices[k].slice(0, 40)}`,
            layer: s.layers[l], p: s.probs[(i * s.L + l) * s.K + k] });
        }
        if (s.arr.falls[i * s.L + l]) {
          falls.push(s.layers[l]);
          marks.push({ store: s.name, layer: s.layers[l], p: s.conf[l * s.n + i], kind: 'fall' });
        }
      }
      marks.push({ store: s.name, layer: commit, p: 0, kind: 'commitment' });
      depths.push(`<span data-store="${si}" data-commitment="${commit}" ` +
        `data-falls="${falls.join(',')}">${esc(s.name)}: the lens answers ` +
        `${s.letters[answer]} (${s.correct[last * s.n + i] ? 'right' : 'wrong'}) from depth ` +
        `<b>${commit}</b> on (commitment); confidence falls at depth ` +
        `${falls.length ? falls.join(', ') : 'none'}</span>`);
    });
    if (!shown) {
      $('question-meta').textContent = '';
      $('question-text').textContent = 'No question selected.';
      $('question-options').innerHTML = '';
    }
    $('question-depths').innerHTML = depths.join('<br>');
    return { qprob: prob, qmarks: marks };
  }

  function fillQuestionSelect(views_) {
    const s = doc.stores[0], sel = views_[0].sel || Int32Array.from({ length: s.n }, (_, i) => i);
    const opts = Array.from(sel, (i) => {
      const id = s.questions.id[i], text = s.questions.text[i].slice(0, 90);
      return `<option value="${esc(id)}">${esc(id)} — ${esc(text)}</option>`;
    });
    $('question-select').innerHTML = opts.join('');
    const ids = Array.from(sel, (i) => s.questions.id[i]);
    if (!ids.includes(state.question)) state.question = ids.length ? ids[0] : null;
    $('question-select').value = state.question === null ? '' : state.question;
  }

  // ---- updates ---------------------------------------------------------------------------
  function setData(name, values) {
    views[name.chart].data(name.data, values);
  }

  // Updates run one after the other, each drawing the state it starts from.
  let queue = Promise.resolve();
  function update(what) {
    queue = queue.then(() => render(what)).catch((e) => console.error('layercal explorer:', e));
    return queue;
  }

  async function render(what) {
    const snapshot = { depth: state.depth, category: state.category, subject: state.subject };
    const views_ = doc.stores.map((s, si) => view(s, si));
    const s0 = doc.stores[0];
    $('depth-value').textContent = `depth ${s0.layers[depthOf(s0)]}`;
    $('selection').textContent = doc.stores.map((s, si) => `${views_[si].n} of ${s.n}`)
      .join(' · ') + ' questions';
    renderPanel(views_);
    setData({ chart: 'reliability', data: 'reliability' }, reliabilityRows(views_));
    setData({ chart: 'hist', data: 'hist' }, histRows(views_));
    const d = depthRows(views_);
    for (const key of Object.keys(d)) setData({ chart: 'depth', data: key }, d[key]);
    if (what !== 'depth') {
      fillQuestionSelect(views_);
      setData({ chart: 'qpoints', data: 'qpoints' }, questionPoints(views_));
    }
    const q = renderQuestion();
    setData({ chart: 'question', data: 'qprob' }, q.qprob);
    setData({ chart: 'question', data: 'qmarks' }, q.qmarks);
    $('depth-note').textContent = filtered()
      ? `Recomputed for the selection, with ${doc.page_boot}-resample bootstrap 95% bands; ` +
        'dashed rules: rise and plateau, shaded: correction phase (whole store).'
      : 'The analysis of all questions: bootstrap 95% bands; dashed rules: rise and plateau, ' +
        'shaded: the correction phase, dotted: chance.';
    await Promise.all(Object.values(views).map((v) => v.runAsync()));
    state.renders += 1;
    document.body.dataset.state = JSON.stringify(
      { ...snapshot, question: state.question, renders: state.renders });
  }

  // ---- set-up ----------------------------------------------------------------------------
  function fillFilters() {
    const cats = [...new Set(doc.stores.flatMap((s) => s.categories))].sort();
    $('category').innerHTML = ['all', ...cats].map((c) => `<option>${esc(c)}</option>`).join('');
    fillSubjects();
  }

  function fillSubjects() {
    const subs = new Set();
    doc.stores.forEach((s) => {
      const cat = s.categories.indexOf(state.category);
      s.questions.subject.forEach((sub, i) => {
        if (state.category === 'all' || s.questions.category[i] === cat) subs.add(s.subjects[sub]);
      });
    });
    $('subject').innerHTML = ['all', ...[...subs].sort()].map((c) => `<option>${esc(c)}</option>`)
      .join('');
    $('subject').value = state.subject;
  }

  function storesTable() {
    const rows = doc.stores.map((s) => `<tr><td><b>${esc(s.name)}</b></td><td>${esc(s.store)}` +
      `</td><td>hash ${esc(s.hash)}</td><td>${s.n} questions, depths ${s.layers[0]}–` +
      `${s.layers[s.layers.length - 1]}</td></tr>`);
    $('stores').innerHTML = rows.join('');
  }

  async function embed(specs, initial) {
    for (const [name, spec] of Object.entries(specs)) {
      const datasets = {};
      for (const [key, values] of Object.entries(initial[name])) datasets[key] = values;
      const res = await vegaEmbed(`#chart-${name}`, { ...spec, datasets: datasets },
        { renderer: 'svg', actions: false });
      views[name] = res.view;
    }
    views.qpoints.addEventListener('click', (event, item) => {
      if (item && item.datum && item.datum.id !== undefined) {
        state.question = item.datum.id;
        $('question-select').value = state.question;
        update('question');
      }
    });
  }

  async function main() {
    doc = await loadPayload();
    doc.stores.forEach(prepare);
    const maxL = Math.max(...doc.stores.map((s) => s.L));
    state.depth = maxL - 1;
    Object.assign($('depth'), { max: String(maxL - 1), value: String(state.depth) });
    storesTable();
    fillFilters();
    const specs = JSON.parse($('layercal-specs').textContent);
    const views_ = doc.stores.map((s, si) => view(s, si));
    fillQuestionSelect(views_);
    const d = depthRows(views_), q = renderQuestion();
    await embed(specs, {
      reliability: { reliability: reliabilityRows(views_) },
      hist: { hist: histRows(views_) },
      depth: d,
      qpoints: { qpoints: questionPoints(views_) },
      question: q,
    });
    $('depth').addEventListener('input', () => {
      state.depth = Number($('depth').value);
      update('depth');
    });
    $('category').addEventListener('change', () => {
      state.category = $('category').value;
      state.subject = 'all';
      fillSubjects();
      update('filter');
    });
    $('subject').addEventListener('change', () => {
      state.subject = $('subject').value;
      update('filter');
    });
    $('question-select').addEventListener('change', () => {
      state.question = $('question-select').value;
      update('question');
    });
    await update('all');
    window.layercalExplorer = { state: state, views: views, doc: doc };
  }

  main().catch((e) => { console.error('layercal explorer:', e); });
})();
