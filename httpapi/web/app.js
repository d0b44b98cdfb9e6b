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

let selected = null; // {id, path, type}
let schema = null;

async function loadTree() {
  let tree;
  try { tree = await api('GET', '/v1/entities/tree?ref=%2F&fields=false'); } catch (e) { $('#tree').replaceChildren(el('li', { class: 'error', text: e.message })); return; }
  const render = (n) => {
    const a = el('a', { 'data-path': n.path, 'data-id': n.id, onclick: () => selectEntity(n.path) },
      n.path === '/' ? '/' : n.name, n.type ? el('span', { class: 'type', text: n.type }) : null);
    if (selected && selected.id === n.id) a.classList.add('selected');
    const li = el('li', {}, a);
    if (n.children && n.children.length) li.append(el('ul', {}, ...n.children.map(render)));
    return li;
  };
  $('#tree').replaceChildren(render(tree));
  if (selected) selectEntity(selected.id, true);
}

async function selectEntity(ref, quiet) {
  let ent;
  try { ent = await api('GET', '/v1/entities?ref=' + encodeURIComponent(ref)); } catch (e) {
    if (!quiet) $('#entity-head').replaceChildren(el('p', { class: 'error', text: e.message }));
    selected = null;
    return;
  }
  selected = { id: ent.id, path: ent.path, type: ent.type };
  for (const a of document.querySelectorAll('#tree a')) a.classList.toggle('selected', a.dataset.id === ent.id);
  schema = null;
  if (ent.type) {
    try { schema = await api('GET', '/v1/schemas/' + encodeURIComponent(ent.type)); } catch (_) { schema = null; }
  }
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
    el('td', { text: `${n.writes_in} / ${n.writes_out}` }),
    el('td', { text: `${n.heads} (h ${n.height})` }),
    el('td', { text: String(n.lag) }),
    el('td', { title: 'live state / history on disk', text: n.live_bytes || n.history_bytes ? `${bytes(n.live_bytes)} / ${bytes(n.history_bytes)}` : '-' }),
    el('td', { class: 'mono', text: (n.addrs || [])[0] || '-' }))));
  drawCharts(hist);
  $('#transitions').replaceChildren(...evs.transitions.slice().reverse().map((t) =>
    el('li', { text: `${new Date(t.time).toLocaleTimeString()}  ${t.node || t.peer.slice(-8)}  ${t.what}  ${t.from || '∅'} → ${t.to}  (${t.reason})` })));
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

function drawCharts(hist) {
  const box = $('#charts');
  const names = Object.keys(hist.nodes).sort();
  for (const name of names) {
    let c = box.querySelector(`[data-chart="${CSS.escape(name)}"]`);
    if (!c) {
      c = el('div', { class: 'chart', 'data-chart': name }, el('h3', { text: name }),
        el('canvas', { width: 360, height: 120 }),
        el('div', { class: 'legend' }, el('span', { class: 'w', text: '■ writes/s' }), ' ', el('span', { class: 'l', text: '■ replication latency (ms)' })));
      box.append(c);
    }
    plot($('canvas', c), hist.nodes[name]);
  }
}

function plot(canvas, samples) {
  const g = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, pad = 4;
  g.clearRect(0, 0, W, H);
  g.strokeStyle = '#e2e8f0';
  g.strokeRect(0.5, 0.5, W - 1, H - 1);
  if (!samples || samples.length < 2) return;
  // A fixed window of the last 5 minutes, so the chart scrolls.
  const t1 = samples[samples.length - 1].t, t0 = t1 - 5 * 60 * 1000;
  const line = (key, color) => {
    const maxV = Math.max(1, ...samples.map((s) => s[key]));
    g.strokeStyle = color;
    g.beginPath();
    samples.forEach((s, i) => {
      const x = pad + ((s.t - t0) / Math.max(1, t1 - t0)) * (W - 2 * pad);
      const y = H - pad - (s[key] / maxV) * (H - 2 * pad);
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
    g.fillStyle = color;
    g.font = '10px sans-serif';
    g.fillText(`max ${maxV.toFixed(key === 'l' ? 1 : 0)}`, key === 'w' ? 6 : W - 70, 12);
  };
  line('w', '#2b6cb0');
  line('l', '#c05621');
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
  window.addEventListener('hashchange', route);
  route();
  watch();
}

start();
