// Starling's web page: entity browser, cluster and election views.
// Plain JavaScript, no build step, no external resources. The session
// cookie authorises every request; writes carry X-Starling-UI.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};

async function api(method, path, body) {
  const opts = { method, credentials: 'same-origin', headers: { 'X-Starling-UI': '1' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) { location.href = '/ui/login'; throw new Error('not logged in'); }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { error: text }; }
  if (!resp.ok) throw new Error((data && data.error) || `${method} ${path}: HTTP ${resp.status}`);
  return data;
}

// Timestamps are 24 hex digits: 16 of wall-clock nanoseconds, 8 logical.
function tsTime(ts) {
  if (!ts || ts.length !== 24 || /^0+$/.test(ts)) return '';
  const ms = Number(BigInt('0x' + ts.slice(0, 16)) / 1000000n);
  const logical = parseInt(ts.slice(16), 16);
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '') + (logical ? ` +${logical}` : '');
}

function showValue(v) {
  if (!v) return '';
  if (v.type === 'null') return 'null';
  if (typeof v.value === 'string') return v.value;
  return JSON.stringify(v.value);
}

function ago(ms) {
  if (ms == null) return '-';
  if (ms < 1000) return `${ms} ms ago`;
  if (ms < 120000) return `${(ms / 1000).toFixed(1)} s ago`;
  return `${Math.round(ms / 60000)} min ago`;
}

// ---------- routing ----------

const pages = ['entities', 'cluster', 'election'];
let current = '';
let timer = null;

function route() {
  const page = pages.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'entities';
  current = page;
  for (const p of pages) $(`#page-${p}`).classList.toggle('hidden', p !== page);
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('active', a.dataset.page === page);
  clearInterval(timer);
  if (page === 'entities') loadTree();
  if (page === 'cluster') { refreshCluster(); timer = setInterval(refreshCluster, 2000); }
  if (page === 'election') { refreshElection(); timer = setInterval(refreshElection, 2000); }
}

// ---------- entity browser ----------

let selected = null; // {id, path, type, name}
let schema = null;
const ROOT = '00000000000000000000000000';
// The tree loads one level at a time (GET /v1/entities/children), shows
// at most PAGE children of a parent with a button for the next page, and
// opens the first AUTO_DEPTH levels by itself where a level has at most
// AUTO_MAX children. What the user opened or closed stays so across
// reloads (a structural change anywhere reloads the open levels).
const PAGE = 100, AUTO_DEPTH = 2, AUTO_MAX = 50;
const opened = new Set(), closed = new Set();

async function loadTree() {
  const root = { id: ROOT, path: '/', name: '/', type: '' };
  const li = treeItem(root, AUTO_DEPTH);
  $('#tree').replaceChildren(li);
  loadDeleted();
  if (selected) selectEntity(selected.id, true);
}

function treeItem(n, autoDepth) {
  const toggle = el('button', { class: 'toggle', text: '▸', title: 'show what is below' });
  const a = el('a', { 'data-path': n.path, 'data-id': n.id, onclick: () => selectEntity(n.path) },
    n.path === '/' ? '/' : n.name, n.type ? el('span', { class: 'type', text: n.type }) : null);
  if (selected && selected.id === n.id) a.classList.add('selected');
  const ul = el('ul', { class: 'hidden' });
  const li = el('li', { 'data-id': n.id }, toggle, a, ul);
  const open = async () => {
    toggle.textContent = '▾';
    ul.classList.remove('hidden');
    await renderChildren(ul, n, autoDepth, toggle);
  };
  toggle.addEventListener('click', () => {
    if (ul.classList.contains('hidden')) { opened.add(n.id); closed.delete(n.id); open(); }
    else { closed.add(n.id); opened.delete(n.id); toggle.textContent = '▸'; ul.classList.add('hidden'); }
  });
  if (!closed.has(n.id) && (autoDepth > 0 || opened.has(n.id))) open();
  return li;
}

async function renderChildren(ul, parent, autoDepth, toggle) {
  let kids;
  try { kids = (await api('GET', '/v1/entities/children?ref=' + encodeURIComponent(parent.id))).entities || []; } catch (e) {
    ul.replaceChildren(el('li', { class: 'error', text: e.message }));
    return;
  }
  if (!kids.length) { toggle.textContent = '·'; toggle.title = 'nothing below'; ul.replaceChildren(); return; }
  kids.sort((x, y) => x.name.localeCompare(y.name));
  const childDepth = kids.length <= AUTO_MAX ? autoDepth - 1 : 0;
  const moreBtn = el('button', { class: 'link more' });
  const moreLi = el('li', { class: 'more' }, moreBtn);
  ul.replaceChildren(moreLi);
  let shown = 0;
  const more = () => {
    for (const k of kids.slice(shown, shown + PAGE)) ul.insertBefore(treeItem(k, childDepth), moreLi);
    shown = Math.min(kids.length, shown + PAGE);
    if (shown >= kids.length) moreLi.remove();
    else moreBtn.textContent = `show ${Math.min(PAGE, kids.length - shown)} more (${kids.length - shown} of ${kids.length} not shown)`;
  };
  moreBtn.addEventListener('click', more);
  more();
}

// Search: entities whose path or type contains the text, in place of the tree.
let searchTimer = null;
function onSearch() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(async () => {
    const q = $('#search').value.trim();
    $('#tree').classList.toggle('hidden', q !== '');
    $('#search-results').classList.toggle('hidden', q === '');
    if (!q) return;
    let res;
    try { res = await api('GET', '/v1/entities/search?limit=100&q=' + encodeURIComponent(q)); } catch (e) {
      $('#search-results').replaceChildren(el('li', { class: 'error', text: e.message }));
      return;
    }
    const items = res.entities.map((n) => el('li', {}, el('a', { 'data-path': n.path, 'data-id': n.id, onclick: () => selectEntity(n.path) },
      n.path, el('span', { class: 'type', text: n.type }))));
    if (!items.length) items.push(el('li', { class: 'muted', text: 'nothing found' }));
    if (res.more) items.push(el('li', { class: 'muted', text: 'more than 100: type more to narrow' }));
    $('#search-results').replaceChildren(...items);
  }, 250);
}

async function loadDeleted() {
  let res;
  try { res = await api('GET', '/v1/entities/deleted?limit=20'); } catch (e) { $('#deleted').replaceChildren(el('li', { class: 'error', text: e.message })); return; }
  const items = res.deleted.map((d) => el('li', { 'data-id': d.id },
    el('span', { class: 'mono', text: d.path }), ' ', el('span', { class: 'type', text: d.type }), ' ',
    d.with_parent ? el('span', { class: 'muted', text: '(with its parent)' }) :
      el('button', { class: 'restore', text: 'restore', onclick: () => restoreEntity(d.id) })));
  if (!items.length) items.push(el('li', { class: 'muted', text: 'nothing deleted' }));
  $('#deleted').replaceChildren(...items);
}

async function restoreEntity(id) {
  try { const r = await api('POST', '/v1/entities/restore', { id }); await loadTree(); selectEntity(r.path); } catch (e) { alertLine(e.message); }
}

function alertLine(msg) { $('#entity-head').append(el('p', { class: 'error', text: msg })); }

// Entity actions: one small form at a time under the entity's head.
function showAction(kind) {
  const form = $('#entity-form');
  const err = el('span', { class: 'error', id: 'entity-form-error' });
  const cancel = el('button', { type: 'button', text: 'cancel', onclick: () => form.classList.add('hidden') });
  let body;
  if (kind === 'create') {
    body = [el('label', {}, 'type ', el('input', { name: 'type', required: '', placeholder: 'e.g. sensor' })),
      el('label', {}, ' name ', el('input', { name: 'name', required: '', placeholder: 'e.g. Sensor7' })),
      el('button', { type: 'submit', text: 'create under ' + selected.path })];
  } else if (kind === 'rename') {
    body = [el('label', {}, 'new name ', el('input', { name: 'name', required: '', value: selected.name })), el('button', { type: 'submit', text: 'rename' })];
  } else if (kind === 'move') {
    body = [el('label', {}, 'new parent path ', el('input', { name: 'parent', required: '', placeholder: '/Factory/Line2' })), el('button', { type: 'submit', text: 'move' })];
  } else {
    body = [el('span', { text: `delete ${selected.path}${selected.kids ? ` and the ${selected.kids} entities directly below it (and theirs)` : ''}? It can be restored.` }),
      el('button', { type: 'submit', class: 'danger', text: 'yes, delete' })];
  }
  form.replaceChildren(...body, cancel, err);
  form.dataset.kind = kind;
  form.classList.remove('hidden');
  const first = $('input', form);
  if (first) first.focus();
}

$('#entity-actions') && $('#entity-actions').addEventListener('click', (e) => {
  const kind = e.target.dataset && e.target.dataset.action;
  if (kind && selected) showAction(kind);
});

$('#entity-form') && $('#entity-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target, kind = form.dataset.kind, ref = encodeURIComponent(selected.id);
  $('#entity-form-error').textContent = '';
  try {
    let r;
    if (kind === 'create') r = await api('POST', '/v1/entities', { parent: selected.id === ROOT ? '/' : selected.id, type: form.type.value.trim(), name: form.name.value.trim() });
    if (kind === 'rename') r = await api('PATCH', '/v1/entities?ref=' + ref, { name: form.name.value.trim() });
    if (kind === 'move') r = await api('PATCH', '/v1/entities?ref=' + ref, { parent: form.parent.value.trim() });
    if (kind === 'delete') r = await api('DELETE', `/v1/entities?ref=${ref}&recursive=${selected.kids ? 'true' : 'false'}`);
    form.classList.add('hidden');
    if (kind === 'create' && selected) opened.add(selected.id);
    const next = kind === 'delete' ? null : (r && r.path) || selected.path;
    if (kind === 'delete') { selected = null; $('#entity-head').replaceChildren(el('p', { class: 'muted', text: 'Deleted: see "Recently deleted" to restore it.' })); $('#fields').classList.add('hidden'); $('#add-field').classList.add('hidden'); $('#entity-actions').classList.add('hidden'); }
    await loadTree();
    if (next) selectEntity(next);
  } catch (err) { $('#entity-form-error').textContent = err.message; }
});

// selectGen orders selectEntity calls: a reload's refresh of the old
// selection may answer after the choice of a new entity, and must not
// win (the last call does).
let selectGen = 0;

async function selectEntity(ref, quiet) {
  const gen = ++selectGen;
  let ent;
  try { ent = await api('GET', '/v1/entities?ref=' + encodeURIComponent(ref)); } catch (e) {
    if (gen !== selectGen) return;
    if (!quiet) $('#entity-head').replaceChildren(el('p', { class: 'error', text: e.message }));
    selected = null;
    return;
  }
  if (gen !== selectGen) return;
  const same = selected && selected.id === ent.id;
  selected = { id: ent.id, path: ent.path, type: ent.type, name: ent.name, kids: 0 };
  // A refresh of the same entity (a reload after a change) keeps an open
  // form; choosing another entity closes it.
  if (!same) $('#entity-form').classList.add('hidden');
  $('#entity-actions').classList.remove('hidden');
  for (const b of document.querySelectorAll('#entity-actions button')) b.disabled = ent.id === ROOT && b.dataset.action !== 'create';
  api('GET', '/v1/entities/children?ref=' + encodeURIComponent(ent.id)).then((r) => { if (selected && selected.id === ent.id) selected.kids = (r.entities || []).length; }, () => {});
  for (const a of document.querySelectorAll('#tree a')) a.classList.toggle('selected', a.dataset.id === ent.id);
  let sc = null;
  if (ent.type) {
    try { sc = await api('GET', '/v1/schemas/' + encodeURIComponent(ent.type)); } catch (_) { sc = null; }
  }
  if (gen !== selectGen) return;
  schema = sc;
  $('#entity-head').replaceChildren(
    el('h2', { id: 'entity-path', text: ent.path }),
    el('p', { class: 'muted' }, `type ${ent.type || '-'} · id `, el('span', { class: 'mono', text: ent.id }),
      schema ? ' · schema: ' + Object.keys(schema.fields || {}).length + ' fields' : ' · no schema'));
  const names = new Set(Object.keys(ent.fields || {}));
  if (schema) for (const f of Object.keys(schema.fields || {})) names.add(f);
  const rows = [...names].sort().map((name) => fieldRow(name, (ent.fields || {})[name]));
  $('#fields tbody').replaceChildren(...rows);
  $('#fields').classList.remove('hidden');
  $('#add-field').classList.remove('hidden');
}

function fieldRow(name, f) {
  const spec = schema && schema.fields ? schema.fields[name] : null;
  const tr = el('tr', { 'data-field': name });
  const val = el('span', { class: 'v mono' });
  const cell = el('td', { class: 'val' }, val);
  const typ = el('td', { class: 'typ' });
  const ts = el('td', { class: 'ts mono' });
  const wr = el('td', { class: 'writer mono' });
  const edit = el('button', { class: 'edit', text: 'edit', onclick: () => editField(tr) });
  tr.append(el('td', { class: 'mono', text: name }), cell, typ, ts, wr, el('td', {}, edit));
  tr._spec = spec;
  updateRow(tr, f);
  return tr;
}

function updateRow(tr, f) {
  const spec = tr._spec;
  tr._field = f;
  $('.v', tr).textContent = f ? showValue(f.value) + (f.default ? ' (default)' : '') : '(not set)';
  $('.typ', tr).textContent = f ? f.value.type : (spec ? spec.type : '');
  if (spec && spec.unit) $('.typ', tr).textContent += ` [${spec.unit}]`;
  $('.ts', tr).textContent = f && !f.default ? tsTime(f.timestamp) : '';
  $('.writer', tr).textContent = f && !f.default ? (f.writer || '') : '';
}

function parseInput(text, spec) {
  const t = text.trim();
  if (spec && spec.type === 'string') return t;
  if (t === '') return '';
  try { return JSON.parse(t); } catch (_) { return t; }
}

function editField(tr) {
  if (tr._editing) return;
  tr._editing = true;
  const cell = $('.val', tr);
  const f = tr._field;
  const input = el('input', { class: 'value', value: f && !f.default ? showValue(f.value) : '' });
  const err = el('span', { class: 'field-error' });
  const done = () => { tr._editing = false; cell.replaceChildren(el('span', { class: 'v mono' })); updateRow(tr, tr._field); };
  const save = async () => {
    err.textContent = '';
    try {
      const res = await api('PUT', `/v1/fields?ref=${encodeURIComponent(selected.id)}&field=${encodeURIComponent(tr.dataset.field)}`,
        { value: parseInput(input.value, tr._spec) });
      const fresh = await api('GET', `/v1/fields?ref=${encodeURIComponent(selected.id)}&field=${encodeURIComponent(tr.dataset.field)}`);
      tr._field = fresh;
      done();
      flash(tr);
      return res;
    } catch (e) { err.textContent = e.message; input.focus(); }
  };
  input.addEventListener('keydown', (e) => { if (e.key === 'Enter') save(); if (e.key === 'Escape') done(); });
  cell.replaceChildren(input, el('button', { text: 'save', onclick: save }), el('button', { text: 'cancel', onclick: done }), err);
  input.focus();
}

function flash(tr) { tr.classList.remove('flash'); void tr.offsetWidth; tr.classList.add('flash'); }

$('#add-field') && $('#add-field').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = e.target;
  const name = form.field.value.trim();
  $('#add-field-error').textContent = '';
  try {
    await api('PUT', `/v1/fields?ref=${encodeURIComponent(selected.id)}&field=${encodeURIComponent(name)}`,
      { value: parseInput(form.value.value, schema && schema.fields ? schema.fields[name] : null) });
    form.reset();
    selectEntity(selected.id, true);
  } catch (err) { $('#add-field-error').textContent = err.message; }
});

// Live updates: the watch stream (Server-Sent Events) of the whole tree.
let treeReload = null;
function watch() {
  const es = new EventSource('/v1/watch?path=%2F');
  es.onopen = () => { $('#live').className = 'live on'; $('#live').textContent = 'live'; };
  es.onerror = () => { $('#live').className = 'live off'; $('#live').textContent = 'reconnecting'; };
  es.onmessage = (m) => {
    let ev;
    try { ev = JSON.parse(m.data); } catch (_) { return; }
    if (current !== 'entities') return;
    if (ev.field === '$reload' || ev.field === '$schema' || ev.field.startsWith('$')) {
      clearTimeout(treeReload);
      treeReload = setTimeout(loadTree, 200);
      return;
    }
    if (!selected || ev.entity !== selected.id) return;
    let tr = document.querySelector(`#fields tr[data-field="${CSS.escape(ev.field)}"]`);
    const f = ev.new ? { value: ev.new, timestamp: ev.timestamp, writer: ev.writer } : null;
    if (!tr) {
      tr = fieldRow(ev.field, f);
      $('#fields tbody').append(tr);
    } else if (!tr._editing) {
      updateRow(tr, f);
    } else {
      tr._field = f;
    }
    flash(tr);
  };
}

// ---------- cluster page ----------

async function refreshCluster() {
  let cs, hist, evs, st;
  try {
    [cs, hist, evs, st] = await Promise.all([api('GET', '/v1/cluster/status'), api('GET', '/v1/cluster/history'), api('GET', '/v1/cluster/events'), api('GET', '/v1/status')]);
  } catch (e) { $('#cards').replaceChildren(el('p', { class: 'error', text: e.message })); return; }
  const active = cs.nodes.filter((n) => n.state === 'ACTIVE').length;
  const card = (label, value, id) => el('div', { class: 'card', id }, el('div', { class: 'label', text: label }), el('div', { class: 'value', text: String(value) }));
  const leader = cs.leader && cs.leader.leader ? `${cs.leader.leader} (term ${cs.leader.term})` : 'none';
  $('#cards').replaceChildren(card('mode', cs.mode, 'card-mode'), card('nodes', cs.node_count, 'card-nodes'),
    card('active', `${active}/${cs.nodes.length}`, 'card-active'), card('leader', leader, 'card-leader'),
    card('this node', `${cs.node_id} · ${cs.sync.phase}`, 'card-self'),
    card('reachability', (st.nat && st.nat.reachability) || 'unknown', 'card-reach'));
  $('#nodes tbody').replaceChildren(...cs.nodes.map((n) => el('tr', { 'data-node': n.node_id || n.peer_id },
    el('td', {}, (n.node_id || '?') + (n.self ? ' (this node)' : '') + (n.leader ? ' ★' : '')),
    el('td', { class: 'mono', title: n.peer_id, text: n.peer_id.slice(0, 8) + '…' + n.peer_id.slice(-6) }),
    el('td', {}, el('span', { class: `state state-${n.state}`, text: n.state })),
    // How it is connected (direct, hole-punched, relayed), or why not.
    el('td', { class: n.health ? `health-${n.health}` : '', title: n.dial_error || '',
      text: n.self ? '-' : n.health + (n.connection ? ` · ${n.connection}` : '') + (!n.connected && n.problem ? ` · ${n.problem}` : '') }),
    el('td', { text: n.self ? 'now' : (n.last_seen ? ago(n.last_seen_ms) : 'never') }),
    el('td', { text: String(n.writes_out) }),
    el('td', { text: String(n.writes_in) }),
    el('td', { text: `${n.heads} (h ${n.height})` }),
    el('td', { text: String(n.lag) }),
    el('td', { title: 'live state / history on disk', text: n.live_bytes || n.history_bytes ? `${bytes(n.live_bytes)} / ${bytes(n.history_bytes)}` : '-' }),
    el('td', { class: 'mono', text: (n.addrs || [])[0] || '-' }))));
  drawCharts(hist);
  // Peers by node ID; a peer no longer in the table (removed) is left out.
  const byPeer = new Map(cs.nodes.map((n) => [n.peer_id, n.node_id]));
  $('#transitions').replaceChildren(...evs.transitions.filter((t) => byPeer.has(t.peer)).reverse().map((t) =>
    el('li', { 'data-peer': t.peer, text: `${new Date(t.time).toLocaleTimeString()}  ${byPeer.get(t.peer) || t.node || t.peer.slice(-8)}  ${t.what}  ${t.from || '∅'} → ${t.to}  (${t.reason})` })));
}

// bytes shows a size on disk, in decimal units as the CLI does.
function bytes(n) {
  n = n || 0;
  if (n < 1000) return `${n} B`;
  const units = 'kMGT';
  let i = -1;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(1)} ${units[i]}B`;
}

// Charts: per node, one plot per unit (writes per second; replication
// latency in milliseconds), each over the last 5 minutes with its time
// axis and its value axis.
const CHARTS = [
  { key: 'w', title: 'writes applied', unit: 'writes/s', color: '#2b6cb0', digits: 0 },
  { key: 'l', title: 'replication latency', unit: 'ms', color: '#c05621', digits: 1 },
];

function drawCharts(hist) {
  const box = $('#charts');
  const names = Object.keys(hist.nodes).sort();
  for (const c of box.querySelectorAll('[data-chart]')) if (!names.includes(c.dataset.chart)) c.remove();
  // One time axis for all: a quiet peer is sampled once per report (up to
  // a minute apart), so its own last sample is not "now".
  let now = 0;
  for (const name of names) {
    const s = hist.nodes[name];
    if (s && s.length) now = Math.max(now, s[s.length - 1].t);
  }
  if (!now) now = Date.now();
  for (const name of names) {
    let c = box.querySelector(`[data-chart="${CSS.escape(name)}"]`);
    if (!c) {
      c = el('div', { class: 'chart', 'data-chart': name }, el('h3', { text: name }),
        ...CHARTS.map((spec) => el('div', { class: 'plot' }, el('div', { class: 'plot-title', text: `${spec.title} (${spec.unit})` }),
          el('canvas', { width: 380, height: 130, 'data-key': spec.key }))));
      box.append(c);
    }
    for (const spec of CHARTS) plot(c.querySelector(`canvas[data-key="${spec.key}"]`), hist.nodes[name], spec, now);
  }
}

function plot(canvas, samples, spec, now) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height;
  const left = 44, right = 8, top = 8, bottom = 20; // room for the axes' labels
  const pw = W - left - right, ph = H - top - bottom;
  g.clearRect(0, 0, W, H);
  g.font = '10px sans-serif';
  const t0 = now - 5 * 60 * 1000;
  const vals = (samples || []).map((x) => x[spec.key]);
  const maxV = niceMax(Math.max(0, ...vals));
  // Value axis: 0, half and the top, with the unit.
  g.strokeStyle = '#e2e8f0';
  g.fillStyle = '#6b7b8c';
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (const f of [0, 0.5, 1]) {
    const y = top + ph - f * ph;
    g.beginPath(); g.moveTo(left, y + 0.5); g.lineTo(left + pw, y + 0.5); g.stroke();
    const v = maxV * f;
    g.fillText(Number.isInteger(v) ? String(v) : v.toFixed(Math.max(1, spec.digits)), left - 4, y);
  }
  // Time axis: a tick each minute, labelled with the clock time.
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let m = 0; m <= 5; m++) {
    const t = t0 + m * 60000, x = left + (m / 5) * pw;
    g.beginPath(); g.moveTo(x + 0.5, top + ph); g.lineTo(x + 0.5, top + ph + 4); g.stroke();
    g.fillText(m === 5 ? 'now' : new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }), x, top + ph + 6);
  }
  g.strokeStyle = '#a0aec0';
  g.strokeRect(left + 0.5, top + 0.5, pw, ph);
  if (!samples || samples.length < 2) {
    g.fillText('no samples yet', left + pw / 2, top + ph / 2 - 5);
    return;
  }
  g.strokeStyle = spec.color;
  g.lineWidth = 1.5;
  g.beginPath();
  let started = false;
  for (const x of samples) {
    if (x.t < t0) continue;
    const px = left + ((x.t - t0) / (now - t0)) * pw, py = top + ph - (x[spec.key] / maxV) * ph;
    if (!started) { g.moveTo(px, py); started = true; } else g.lineTo(px, py);
  }
  g.stroke();
  g.lineWidth = 1;
}

// niceMax rounds a maximum up to 1, 2 or 5 times a power of ten, so the
// axis labels are round numbers.
function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// ---------- election page ----------

async function refreshElection() {
  let groups, evs;
  try {
    [groups, evs] = await Promise.all([api('GET', '/v1/election/groups'), api('GET', '/v1/cluster/events')]);
  } catch (e) { $('#groups').replaceChildren(el('p', { class: 'error', text: e.message })); return; }
  const yn = (b) => el('span', { class: b ? 'yes' : 'no', text: b ? 'yes' : 'no' });
  $('#groups').replaceChildren(...groups.groups.map((g) => el('div', { class: 'group', 'data-group': g.name },
    el('h3', { text: `${g.name} · ${g.kind}${g.kind === 'endpoint' ? ' · ' + g.mode : ''}` }),
    el('p', {}, g.warming ? 'warming up: no leader reported yet' :
      (g.leader.leader ? `leader ${g.leader.leader} on ${g.leader.node}, term ${g.leader.term}, for ${(g.since_ms / 1000).toFixed(0)} s` : 'no leader')),
    (g.conflicts || []).length ? el('p', { class: 'error', text: g.conflicts.join('; ') }) : null,
    el('table', { class: 'grid' },
      el('thead', {}, el('tr', {}, ...['Candidate', 'Node', 'Alive', 'Healthy', 'Available', 'Eligible', 'Leader', 'Last heard'].map((h) => el('th', { text: h })))),
      el('tbody', {}, ...g.members.map((m) => el('tr', {},
        el('td', { text: m.id + (m.local ? ' (this node)' : '') }), el('td', { text: m.node }),
        el('td', {}, yn(m.alive)), el('td', {}, yn(m.healthy)),
        el('td', {}, m.settling ? 'settling' : yn(m.available)), el('td', {}, yn(m.eligible)),
        el('td', { text: m.leader ? 'LEADER' : '' }), el('td', { text: m.local ? '-' : ago(m.last_seen_ms) }))))))));
  $('#changes').replaceChildren(...evs.leadership.slice().reverse().map((c) =>
    el('li', { text: `${new Date(c.time).toLocaleTimeString()}  ${c.group}: ${c.previous || 'none'} → ${c.leader || 'none'}  term ${c.term}  (${c.reason})` })));
}

// ---------- start ----------

async function start() {
  $('#logout').addEventListener('click', async () => { await fetch('/ui/logout', { method: 'POST', headers: { 'X-Starling-UI': '1' } }); location.href = '/ui/login'; });
  try {
    const st = await api('GET', '/v1/status');
    $('#node-name').textContent = `${st.node_id} · ${st.env}`;
    document.title = `Starling · ${st.node_id}`;
  } catch (_) { /* redirected to login */ }
  $('#search').addEventListener('input', onSearch);
  window.addEventListener('hashchange', route);
  route();
  watch();
}

start();
