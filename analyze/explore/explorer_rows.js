// layercal explorer, part 2 of 3: the selection and the rows of every chart (the data sets
// named in analyze/explore/specs.py), for the state the controls set.

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

