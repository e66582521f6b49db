// tether dashboard: plain JS, no framework. The API token lives in this tab's sessionStorage only and
// goes out as an Authorization: Bearer header on every call; no cookie exists, so no CSRF.
'use strict';

const KEY = 'tether.token';
const POLL_MS = 4000; // fallback when the event stream fails, and the refresh of live byte counters
const S = { token: null, admin: false, view: 'sites', site: null, query: null, sites: new Map(),
  auditBefore: null, armed: null, events: null, qstream: null, poll: null, retry: null };

const $ = (id) => document.getElementById(id);

// el('td', {class: 'x'}, 'text', child...): text goes in as text, never as HTML.
function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const k of kids) {
    if (k === null || k === undefined) continue;
    e.append(k instanceof Node ? k : String(k));
  }
  return e;
}

function when(ts) {
  if (ts === null || ts === undefined) return '-';
  return new Date(ts * 1000).toLocaleString();
}

function ago(ts) {
  if (!ts) return 'never';
  let s = Math.max(0, Math.round(Date.now() / 1000 - ts));
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}

function bytes(n) {
  if (n === null || n === undefined) return '-';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + u[i];
}

function showError(msg) {
  $('err').textContent = msg || '';
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.detail || body.error)) || ('HTTP ' + status));
    this.status = status;
  }
}

async function api(method, path, body) {
  const opt = { method, headers: { Authorization: 'Bearer ' + S.token }, cache: 'no-store' };
  if (body !== undefined) {
    opt.headers['Content-Type'] = 'application/json';
    opt.body = JSON.stringify(body);
  }
  const r = await fetch(path, opt);
  const txt = await r.text();
  let js = null;
  try { js = txt ? JSON.parse(txt) : null; } catch (e) { js = null; }
  if (r.status === 401 && S.token) { signOut('the token was refused (revoked or expired?)'); }
  if (!r.ok) throw new ApiError(r.status, js);
  return js;
}

// Reads a text/event-stream response with fetch (EventSource cannot send a bearer header) and
// calls onEvent(name, data) per event. Resolves when the stream ends; rejects on an error.
async function readSSE(path, signal, onEvent) {
  const r = await fetch(path, { headers: { Authorization: 'Bearer ' + S.token, Accept: 'text/event-stream' },
    signal, cache: 'no-store' });
  if (!r.ok || !r.body) throw new ApiError(r.status, null);
  const reader = r.body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let ev = 'message';
      const data = [];
      for (const line of frame.split('\n')) {
        if (line.startsWith(':')) continue; // keep-alive comment
        if (line.startsWith('event:')) ev = line.slice(6).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      if (data.length) {
        let d = null;
        try { d = JSON.parse(data.join('\n')); } catch (e) { continue; }
        onEvent(ev, d);
      }
    }
    if (buf.length > 1 << 20) throw new Error('event too large');
  }
}

// ---- sign in / out ----

async function signIn(token) {
  S.token = token;
  try {
    await api('GET', '/v1/sites');
  } catch (e) {
    S.token = null;
    $('signin-err').textContent = e.status === 401 ? 'That token was refused.' : 'Sign-in failed: ' + e.message;
    return;
  }
  try {
    await api('GET', '/v1/tokens');
    S.admin = true;
  } catch (e) {
    S.admin = false;
  }
  sessionStorage.setItem(KEY, token);
  $('token').value = '';
  $('signin-err').textContent = '';
  document.body.classList.toggle('admin', S.admin);
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('signout').hidden = false;
  $('who').textContent = S.admin ? 'admin' : 'user';
  startEvents();
  show('sites');
}

function signOut(why) {
  stopStreams();
  S.token = null;
  S.admin = false;
  sessionStorage.removeItem(KEY);
  document.body.classList.remove('admin');
  // Nothing the last token could see stays on the page.
  S.sites = new Map();
  S.site = S.query = null;
  for (const t of document.querySelectorAll('table tbody')) t.replaceChildren();
  for (const b of document.querySelectorAll('.secret')) { b.replaceChildren(); b.hidden = true; }
  $('query').hidden = true;
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  $('nav').hidden = true;
  $('signout').hidden = true;
  $('who').textContent = '';
  $('signin').hidden = false;
  $('signin-err').textContent = why || '';
  setLive(false);
}

function stopStreams() {
  if (S.events) S.events.abort();
  if (S.qstream) S.qstream.abort();
  S.events = S.qstream = null;
  clearInterval(S.poll);
  clearTimeout(S.retry);
  S.poll = S.retry = null;
}

// ---- views ----

function show(view, arg) {
  S.view = view;
  for (const v of document.querySelectorAll('.view')) v.hidden = true;
  for (const b of document.querySelectorAll('nav button')) b.classList.toggle('on', b.dataset.view === view ||
    (view === 'site' && b.dataset.view === 'sites'));
  showError('');
  if (view !== 'queries' && S.qstream) { S.qstream.abort(); S.qstream = null; }
  const sec = $('view-' + view);
  if (sec) sec.hidden = false;
  const load = { sites: loadSites, site: () => loadSite(arg), queries: loadQueries, audit: () => loadAudit(true),
    tokens: loadTokens }[view];
  load().catch((e) => showError(e.message));
}

// ---- sites ----

function siteRow(s) {
  const status = el('td', { class: 'status ' + (s.online ? 'online' : 'offline') },
    s.online ? 'online' : 'offline');
  if (!s.online) status.append(el('div', { class: 'muted' }, 'last seen ' + ago(s.last_seen)));
  const labels = el('td');
  for (const [k, v] of Object.entries(s.labels || {})) labels.append(el('span', { class: 'tag' }, k + '=' + v));
  const services = el('td');
  for (const v of s.services || []) services.append(el('span', { class: 'tag' }, v));
  const acts = el('td', { class: 'admin-only actions' });
  if (S.admin) {
    if (s.state === 'active') acts.append(actBtn('Disable', 'disable', () => patchState(s.name, 'disabled')));
    if (s.state === 'disabled') acts.append(actBtn('Enable', 'enable', () => patchState(s.name, 'active')));
    if (s.state !== 'revoked' && s.state !== 'pending') acts.append(revokeBtn(s.name));
    acts.append(actBtn('New token', 'enroll', () => enrollToken(s.name)));
  }
  const tr = el('tr', { class: 'click', 'data-site': s.name },
    el('td', { class: 'name' }, el('b', null, s.name)),
    el('td', { class: 'state state-' + s.state }, s.state),
    status,
    el('td', null, s.online ? when(s.connected_since) : '-'),
    el('td', null, s.remote_addr || '-'),
    el('td', null, s.agent_version || '-'),
    services, labels,
    el('td', { class: 'bytes' }, s.online ? bytes(s.bytes_in) + ' / ' + bytes(s.bytes_out) : '-'),
    el('td', { class: 'requests' }, s.online ? s.requests + (s.streams_open ? ' (' + s.streams_open + ' open)' : '') : '-'),
    acts);
  tr.addEventListener('click', (ev) => { if (!ev.target.closest('button')) show('site', s.name); });
  return tr;
}

function actBtn(label, cls, fn) {
  return el('button', { type: 'button', class: cls, onclick: (ev) => { ev.stopPropagation(); fn().catch((e) => showError(e.message)); } }, label);
}

// Revoking cannot be undone: the first click arms the button for 5 s (kept across the row's
// live re-renders), the second revokes.
function revokeBtn(name) {
  const armed = S.armed && S.armed.name === name && Date.now() < S.armed.until;
  const b = el('button', { type: 'button', class: 'danger revoke' }, armed ? 'Confirm revoke' : 'Revoke');
  b.addEventListener('click', (ev) => {
    ev.stopPropagation();
    if (!(S.armed && S.armed.name === name && Date.now() < S.armed.until)) {
      S.armed = { name, until: Date.now() + 5000 };
      b.textContent = 'Confirm revoke';
      return;
    }
    S.armed = null;
    api('POST', '/v1/sites/' + encodeURIComponent(name) + '/revoke').then(() => refreshSite(name))
      .catch((e) => showError(e.message));
  });
  return b;
}

async function patchState(name, state) {
  await api('PATCH', '/v1/sites/' + encodeURIComponent(name), { state });
  await refreshSite(name);
}

function showSecret(box, title, token, hint) {
  box.replaceChildren(el('b', null, title), el('br'), el('code', { class: 'token' }, token),
    el('div', { class: 'muted' }, hint));
  box.hidden = false;
}

function enrollHint(r) {
  return 'On the site: tether-site enroll --state STATE_DIR TOKEN (the token names this hub). Expires ' +
    when(r.expires_at) + '.';
}

async function enrollToken(name) {
  const r = await api('POST', '/v1/sites/' + encodeURIComponent(name) + '/enroll', {});
  showSecret($('secret'), 'Enrollment token for ' + name + ' (shown once):', r.enrollment_token,
    enrollHint(r));
}

async function addSite() {
  const name = $('new-site').value.trim();
  if (!name) return;
  const r = await api('POST', '/v1/sites', { name });
  $('new-site').value = '';
  showSecret($('secret'), 'Site ' + r.name + ' added. Its enrollment token (shown once):', r.enrollment_token,
    enrollHint(r));
  await loadSites();
}

function renderSites() {
  const rows = [...S.sites.values()].sort((a, b) => a.name.localeCompare(b.name)).map(siteRow);
  $('sites').tBodies[0].replaceChildren(...rows);
  $('sites-empty').hidden = rows.length > 0;
}

async function loadSites() {
  const r = await api('GET', '/v1/sites');
  S.sites = new Map(r.sites.map((s) => [s.name, s]));
  if (S.view === 'sites') renderSites();
}

// One site changed (an event): re-read it, and the view that shows it.
async function refreshSite(name) {
  try {
    const s = await api('GET', '/v1/sites/' + encodeURIComponent(name));
    delete s.sessions;
    S.sites.set(name, s);
  } catch (e) {
    if (e.status !== 404) throw e;
    S.sites.delete(name); // removed, or out of this token's scope
  }
  if (S.view === 'sites') renderSites();
  if (S.view === 'site' && S.site === name) await loadSite(name);
}

// ---- a site's detail ----

const OPERATOR = /by operator|key rotated|enrolled again|replaced by a newer|hub shutting down|hub restarted/;

async function loadSite(name) {
  S.site = name;
  const s = await api('GET', '/v1/sites/' + encodeURIComponent(name));
  $('site-title').textContent = s.name;
  const facts = [['State', s.state], ['Status', s.online ? 'online' : 'offline, last seen ' + ago(s.last_seen)],
    ['Connected since', s.online ? when(s.connected_since) : '-'], ['Address', s.remote_addr || '-'],
    ['Agent', s.agent_version || '-'], ['Services', (s.services || []).join(', ') || '-'],
    ['Labels', Object.entries(s.labels || {}).map(([k, v]) => k + '=' + v).join(', ') || '-'],
    ['Bytes in / out', s.online ? bytes(s.bytes_in) + ' / ' + bytes(s.bytes_out) : '-'],
    ['Requests (this session)', s.online ? s.requests + ', ' + s.streams_open + ' open' : '-'],
    ['Key pin', s.pin || '-'], ['Enrolled', when(s.enrolled_at)], ['Created', when(s.created_at)]];
  $('site-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', null, k), el('dd', { 'data-fact': k }, v)]));
  const sess = s.sessions || [];
  $('sessions').tBodies[0].replaceChildren(...sess.map((x) => el('tr', null,
    el('td', null, when(x.connected_at)), el('td', null, x.live ? 'live' : when(x.disconnected_at)),
    el('td', null, x.duration_s + ' s'), el('td', null, x.remote_addr || '-'), el('td', null, x.agent_version || '-'),
    el('td', null, bytes(x.bytes_in) + ' / ' + bytes(x.bytes_out)),
    el('td', { class: 'reason' }, x.live ? '-' : (x.reason || '-')))));
  // The API keeps no error log per site: the ends of sessions that no operator caused are its errors.
  const errs = sess.filter((x) => !x.live && x.reason && !OPERATOR.test(x.reason));
  $('site-errors').replaceChildren(...(errs.length ? errs.map((x) => el('li', null, when(x.disconnected_at) + ': ' + x.reason))
    : [el('li', { class: 'muted' }, 'none in the last sessions')]));
}

// ---- queries ----

function counts(c) {
  return Object.entries(c || {}).filter(([, v]) => v).map(([k, v]) => k + ' ' + v).join(', ');
}

async function loadQueries() {
  const r = await api('GET', '/v1/queries?limit=50');
  $('queries').tBodies[0].replaceChildren(...r.queries.map((q) => {
    const tr = el('tr', { class: 'click', 'data-query': q.id },
      el('td', null, el('code', null, q.id)), el('td', { class: 'qstatus' }, q.status), el('td', null, when(q.created_at)),
      el('td', null, q.user), el('td', null, q.service), el('td', null, q.method + ' ' + q.path),
      el('td', null, q.n_sites), el('td', null, counts(q.counts)));
    tr.addEventListener('click', () => openQuery(q.id).catch((e) => showError(e.message)));
    return tr;
  }));
}

function resultRow(x) {
  let out = x.detail || '';
  if (x.status === 'done') out = x.body !== null && x.body !== undefined ? x.body : (x.body_base64 ? '(binary, base64) ' + x.body_base64 : '');
  return el('tr', { 'data-result': x.site }, el('td', null, x.site), el('td', { class: 'rstatus' }, x.status),
    el('td', null, x.http_status ?? '-'), el('td', null, x.latency_ms !== null && x.latency_ms !== undefined ? x.latency_ms + ' ms' : '-'),
    el('td', null, el('pre', null, out)));
}

function setResult(x) {
  const body = $('results').tBodies[0];
  const row = resultRow(x);
  const old = body.querySelector('tr[data-result="' + CSS.escape(x.site) + '"]');
  if (old) old.replaceWith(row); else body.append(row);
}

async function openQuery(id) {
  if (S.qstream) S.qstream.abort();
  S.query = id;
  const q = await api('GET', '/v1/queries/' + encodeURIComponent(id));
  $('query-title').textContent = 'Query ' + q.id + ' (' + q.method + ' ' + q.path + ' on ' + q.service + '): ' + q.status;
  $('results').tBodies[0].replaceChildren(...q.sites.map(resultRow));
  $('query').hidden = false;
  if (q.status !== 'running') return; // complete or cancelled: nothing more will land
  // Results arrive over the query's own event stream as the sites answer.
  const ctl = new AbortController();
  S.qstream = ctl;
  readSSE('/v1/queries/' + encodeURIComponent(id) + '/events', ctl.signal, (ev, d) => {
    if (ev === 'result') setResult(d);
    if (ev === 'done') {
      $('query-title').textContent = 'Query ' + id + ': ' + d.status + ' (' + counts(d.counts) + ')';
      loadQueries().catch(() => {});
    }
  }).catch(() => {}).finally(() => { if (S.qstream === ctl) S.qstream = null; });
}

async function runQuery() {
  $('q-err').textContent = '';
  const sites = $('q-sites').value.trim();
  const body = { sites: sites === '*' ? '*' : sites.split(',').map((x) => x.trim()).filter(Boolean),
    service: $('q-service').value.trim(), method: $('q-method').value, path: $('q-path').value.trim() || '/' };
  try {
    const r = await api('POST', '/v1/queries', body);
    await loadQueries();
    await openQuery(r.id);
  } catch (e) {
    $('q-err').textContent = e.message;
  }
}

// ---- audit log and tokens (admin) ----

async function loadAudit(first) {
  if (first) S.auditBefore = null;
  const r = await api('GET', '/v1/audit?limit=100' + (S.auditBefore ? '&before=' + S.auditBefore : ''));
  const rows = r.entries.map((x) => el('tr', null, el('td', null, when(x.ts)), el('td', null, x.actor),
    el('td', null, x.remote), el('td', null, x.action), el('td', null, x.target),
    el('td', { class: x.result === 'ok' ? '' : 'err' }, x.result), el('td', null, x.detail)));
  if (first) $('audit').tBodies[0].replaceChildren(...rows); else $('audit').tBodies[0].append(...rows);
  S.auditBefore = r.next_before;
  $('audit-more').hidden = !r.next_before;
}

async function loadTokens() {
  const r = await api('GET', '/v1/tokens');
  $('tokens').tBodies[0].replaceChildren(...r.tokens.map((t) => el('tr', null, el('td', null, t.name),
    el('td', null, t.role), el('td', null, t.sites === null || t.sites === undefined ? 'all' : JSON.stringify(t.sites)),
    el('td', null, t.status), el('td', null, when(t.created_at)), el('td', null, t.expires_at ? when(t.expires_at) : 'never'))));
}

async function createToken() {
  $('t-err').textContent = '';
  const role = $('t-role').value;
  const body = { name: $('t-name').value.trim(), role };
  if (role === 'user') {
    const s = $('t-sites').value.trim();
    body.sites = s === '*' ? '*' : s.split(',').map((x) => x.trim()).filter(Boolean);
  }
  try {
    const r = await api('POST', '/v1/tokens', body);
    showSecret($('t-secret'), 'Token ' + r.name + ' (shown once; the hub keeps only its hash):', r.token,
      'Give it to its user; tetherctl reads it from TETHER_TOKEN.');
    $('t-name').value = '';
    await loadTokens();
  } catch (e) {
    $('t-err').textContent = e.message;
  }
}

// ---- live updates ----

function setLive(on) {
  $('live').textContent = on ? 'live' : 'polling';
  $('live').className = 'live ' + (on ? 'on' : 'off');
}

function refreshView() {
  if (S.view === 'sites') return loadSites();
  if (S.view === 'site' && S.site) return loadSite(S.site);
  return Promise.resolve();
}

// GET /v1/events: a "site" event names a site that came online, went offline or changed.
// While the stream is up, the byte counters still refresh every few seconds; when it fails the
// same timer keeps the page current and the stream is tried again.
function startEvents() {
  if (!S.token) return;
  const ctl = new AbortController();
  S.events = ctl;
  if (!S.poll) S.poll = setInterval(() => refreshView().catch(() => {}), POLL_MS);
  readSSE('/v1/events', ctl.signal, (ev, d) => {
    setLive(true);
    if (ev === 'site' && d.site) refreshSite(d.site).catch((e) => showError(e.message));
  }).then(() => null, () => null).then(() => {
    if (S.events !== ctl) return;
    S.events = null;
    setLive(false);
    S.retry = setTimeout(startEvents, POLL_MS);
  });
  setLive(true);
}

// ---- wiring ----

document.addEventListener('DOMContentLoaded', () => {
  $('signin-btn').addEventListener('click', () => signIn($('token').value.trim()));
  $('token').addEventListener('keydown', (e) => { if (e.key === 'Enter') signIn($('token').value.trim()); });
  $('signout').addEventListener('click', () => signOut(''));
  for (const b of document.querySelectorAll('nav button')) b.addEventListener('click', () => show(b.dataset.view));
  $('site-back').addEventListener('click', () => show('sites'));
  $('add-site').addEventListener('click', () => addSite().catch((e) => showError(e.message)));
  $('q-run').addEventListener('click', runQuery);
  $('audit-more').addEventListener('click', () => loadAudit(false).catch((e) => showError(e.message)));
  $('t-create').addEventListener('click', createToken);
  const saved = sessionStorage.getItem(KEY);
  if (saved) signIn(saved); else signOut('');
});
