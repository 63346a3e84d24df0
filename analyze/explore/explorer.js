// layercal explorer, part 3 of 3: the metrics panel, the question view, the controls, and the
// charts drawn with vega-embed and fed through its View API.

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

const TITLES = { accuracy: 'accuracy', ece: 'ECE', smece: 'smECE', smooth_ece: 'smECE', mce: 'MCE',
  brier: 'Brier', nll: 'NLL (nats)', mean_confidence: 'mean confidence',
  option_mass: 'option mass' };

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
