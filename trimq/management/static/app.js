// trimq's management UI: plain JavaScript over the RabbitMQ-compatible HTTP API (/api/...).
// Credentials live in sessionStorage and go out as HTTP basic auth on every request; no cookie
// carries authority. Every value from the broker is put in the page with textContent (never
// innerHTML), so nothing it sends can run as markup.
'use strict';

const REFRESH_MS = 5000;
const CHART_POINTS = 120;
const AUTH_KEY = 'trimq.auth';
const USER_KEY = 'trimq.user';

const ui = {
  refreshers: [], // functions re-run every REFRESH_MS while the page is shown
  timer: null,
  route: '',
  vhosts: [],
  rates: [], // samples of overview message rates for the chart
};

// ---------------------------------------------------------------- DOM helpers

/** Build an element: attrs are properties/attributes, children strings become text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'value') el.value = value;
    else if (key === 'checked') el.checked = Boolean(value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function $(id) {
  return document.getElementById(id);
}

function flash(message, kind) {
  const box = $('flash');
  box.textContent = message;
  box.className = kind || 'info';
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

// ---------------------------------------------------------------- formatting

function fmtNum(n) {
  if (n === undefined || n === null || n === '') return '';
  if (typeof n !== 'number') return String(n);
  return n.toLocaleString('en-US');
}

function fmtRate(stats, key) {
  const details = stats && stats[key + '_details'];
  if (!details || typeof details.rate !== 'number') return '';
  return details.rate.toFixed(1) + '/s';
}

function fmtBytes(n) {
  if (typeof n !== 'number') return n === undefined || n === null ? '' : String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return (i === 0 ? String(n) : n.toFixed(1)) + ' ' + units[i];
}

function fmtUptime(ms) {
  if (typeof ms !== 'number') return '';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const hrs = Math.floor(s / 3600);
  s -= hrs * 3600;
  const m = Math.floor(s / 60);
  return (d ? d + 'd ' : '') + hrs + 'h ' + m + 'm';
}

function fmtValue(v) {
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function fmtTags(tags) {
  return Array.isArray(tags) ? tags.join(', ') : fmtValue(tags);
}

function features(obj) {
  const out = [];
  if (obj.durable) out.push('D');
  if (obj.auto_delete) out.push('AD');
  if (obj.exclusive) out.push('Excl');
  if (obj.internal) out.push('I');
  const args = obj.arguments || {};
  for (const key of Object.keys(args)) out.push(key.replace(/^x-/, ''));
  if (obj.policy) out.push('Pol: ' + obj.policy);
  return out.join(' ');
}

// ---------------------------------------------------------------- HTTP

class ApiError extends Error {
  constructor(status, reason) {
    super(reason);
    this.status = status;
    this.loggedOut = false;
  }
}

function authHeader() {
  return sessionStorage.getItem(AUTH_KEY);
}

function enc(s) {
  return encodeURIComponent(s);
}

/** Call the API; returns parsed JSON (or null for an empty body). Throws ApiError. */
async function api(method, path, body, extraHeaders) {
  const headers = { Authorization: authHeader() || '' };
  Object.assign(headers, extraHeaders || {});
  const init = { method, headers, credentials: 'omit', cache: 'no-store' };
  if (body instanceof FormData) {
    init.body = body; // multipart/form-data: the browser writes the Content-Type and boundary
  } else if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch('api' + path, init);
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = text;
    }
  }
  if (!resp.ok) {
    const reason = data && typeof data === 'object' ? data.reason || data.error : data;
    const error = new ApiError(resp.status, resp.status + ' ' + (reason || resp.statusText));
    // 401 "not_authorised" is a missing tag or permission (the user stays logged in); any
    // other 401 means the credentials no longer work.
    const refused = data && typeof data === 'object' && data.error === 'not_authorised';
    if (resp.status === 401 && !refused && path !== '/whoami') {
      error.loggedOut = true;
      logout('Your credentials were refused: log in again.');
    }
    throw error;
  }
  return data;
}

/** Run an action from a button or form; report success or failure in the flash bar. */
async function act(fn, okMessage) {
  try {
    const result = await fn();
    if (okMessage) flash(typeof okMessage === 'function' ? okMessage(result) : okMessage, 'ok');
    refreshNow();
    return result;
  } catch (err) {
    if (!err.loggedOut) flash(err.message || String(err), 'error');
    return undefined;
  }
}

// ---------------------------------------------------------------- login

function encodeBasic(user, pass) {
  const bytes = new TextEncoder().encode(user + ':' + pass);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return 'Basic ' + btoa(bin);
}

async function login(event) {
  event.preventDefault();
  const user = $('login-username').value;
  const pass = $('login-password').value;
  sessionStorage.setItem(AUTH_KEY, encodeBasic(user, pass));
  const error = $('login-error');
  error.hidden = true;
  try {
    const me = await api('GET', '/whoami');
    sessionStorage.setItem(USER_KEY, me.name);
    $('login-password').value = '';
    showApp();
  } catch (err) {
    sessionStorage.removeItem(AUTH_KEY);
    error.textContent = err.status === 401 ? 'Login failed: ' + err.message : err.message;
    error.hidden = false;
  }
}

function logout(message) {
  sessionStorage.removeItem(AUTH_KEY);
  sessionStorage.removeItem(USER_KEY);
  stopRefresh();
  $('nav').hidden = true;
  $('who').hidden = true;
  $('page').hidden = true;
  $('page').replaceChildren();
  $('login').hidden = false;
  const error = $('login-error');
  error.textContent = message || '';
  error.hidden = !message;
}

function showApp() {
  $('login').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = 'User ' + (sessionStorage.getItem(USER_KEY) || '');
  $('page').hidden = false;
  route();
}

// ---------------------------------------------------------------- routing and refresh

function stopRefresh() {
  clearInterval(ui.timer);
  ui.timer = null;
  ui.refreshers = [];
}

function refreshNow() {
  for (const fn of ui.refreshers) fn();
}

/**
 * Register a live section: fn fills it now and again every REFRESH_MS. A failure is shown in
 * `box` (the section's own content), so it never hides the answer to the user's last action.
 */
function live(fn, box) {
  const run = async () => {
    try {
      await fn();
    } catch (err) {
      if (err.loggedOut) return;
      box.replaceChildren(h('p', { class: 'error' }, 'Could not load this: ' + (err.message || String(err))));
    }
  };
  ui.refreshers.push(run);
  run();
}

function route() {
  if (!authHeader()) return;
  stopRefresh();
  if (!ui.keepFlash) $('flash').hidden = true;
  ui.keepFlash = false;
  const hash = location.hash.replace(/^#\/?/, '');
  const parts = hash.split('/').map((p) => {
    try {
      return decodeURIComponent(p);
    } catch (e) {
      return p;
    }
  });
  const page = parts[0] || 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
  const root = $('page');
  root.replaceChildren();
  const pages = {
    overview: pageOverview,
    connections: pageConnections,
    channels: pageChannels,
    exchanges: parts.length >= 3 ? () => pageExchange(parts[1], parts[2]) : pageExchanges,
    queues: parts.length >= 3 ? () => pageQueue(parts[1], parts[2]) : pageQueues,
    admin: pageAdmin,
  };
  (pages[page] || pageOverview)(root);
  ui.timer = setInterval(() => {
    if (!document.hidden) refreshNow(); // no polling from a tab nobody looks at
  }, REFRESH_MS);
}

/** Fetch the vhost names and refill every vhost <select> on the page, keeping its choice. */
async function loadVhosts() {
  try {
    const list = await api('GET', '/vhosts?columns=name');
    ui.vhosts = list.map((v) => v.name);
  } catch (err) {
    if (!ui.vhosts.length) ui.vhosts = ['/'];
  }
  for (const select of document.querySelectorAll('select.vhost-select')) fillVhosts(select);
  return ui.vhosts;
}

function fillVhosts(select) {
  const chosen = select.value;
  select.replaceChildren(...(ui.vhosts.length ? ui.vhosts : ['/']).map((n) => h('option', { value: n }, n)));
  if (ui.vhosts.includes(chosen)) select.value = chosen;
}

function vhostSelect(id) {
  const select = h('select', { id, name: 'vhost', class: 'vhost-select' });
  fillVhosts(select);
  loadVhosts();
  return select;
}

// ---------------------------------------------------------------- generic widgets

/**
 * A table: columns are [header, row => cell content (string or Node), sort key]. With a
 * `sorting` {key, reverse, onSort}, headers that have a sort key are links that sort by it.
 */
function table(columns, rows, attrs, sorting) {
  const header = ([title, , key]) => {
    if (!sorting || !key) return h('th', {}, title);
    const mark = sorting.key === key ? (sorting.reverse ? ' \u25bc' : ' \u25b2') : '';
    const sort = (e) => {
      e.preventDefault();
      sorting.onSort(key);
    };
    return h('th', {}, h('a', { href: '#', class: 'sort', onclick: sort }, title + mark));
  };
  const head = h('tr', {}, columns.map(header));
  const body = rows.map((row) =>
    h('tr', {}, columns.map(([, cell]) => h('td', {}, cell(row)))),
  );
  if (!rows.length) {
    body.push(h('tr', {}, h('td', { colspan: columns.length, class: 'empty' }, 'Nothing here.')));
  }
  return h('table', attrs || {}, h('thead', {}, head), h('tbody', {}, body));
}

/** Key/value table for one object. */
function kvTable(pairs, attrs) {
  return h(
    'table',
    Object.assign({ class: 'kv' }, attrs || {}),
    h('tbody', {}, pairs.map(([k, v]) => h('tr', {}, h('th', {}, k), h('td', {}, v)))),
  );
}

function section(title, ...content) {
  return h('section', {}, h('h2', {}, title), ...content);
}

function field(label, input) {
  return h('label', {}, h('span', {}, label), input);
}

function parseJsonField(text, what) {
  if (!text.trim()) return {};
  try {
    const value = JSON.parse(text);
    if (typeof value !== 'object' || Array.isArray(value) || value === null) {
      throw new Error('not an object');
    }
    return value;
  } catch (e) {
    throw new Error(what + ' must be a JSON object, such as {"x-max-length": 10}');
  }
}

/** A <select> of [value, label] pairs (a plain string is both). */
function choice(id, pairs) {
  return h(
    'select',
    { id },
    pairs.map((pair) => (Array.isArray(pair) ? h('option', { value: pair[0] }, pair[1]) : h('option', { value: pair }, pair))),
  );
}

function button(text, onclick, attrs) {
  return h('button', Object.assign({ type: 'button', onclick }, attrs || {}), text);
}

/**
 * A paginated, filterable list that refreshes itself (the API's page, page_size, name and
 * use_regex parameters, so a broker with thousands of objects sends one page).
 */
function pagedList(container, path, columns, idPrefix) {
  const state = { page: 1, filter: '', regex: false, sort: '', reverse: false };
  const sorting = {
    onSort: (key) => {
      state.reverse = state.sort === key ? !state.reverse : false;
      state.sort = key;
      update();
    },
  };
  const filterInput = h('input', {
    id: idPrefix + '-filter',
    placeholder: 'Filter by name',
    oninput: () => {
      state.filter = filterInput.value;
      state.page = 1;
      update();
    },
  });
  const regexBox = h('input', {
    type: 'checkbox',
    onchange: () => {
      state.regex = regexBox.checked;
      update();
    },
  });
  const pager = h('span', { class: 'pager' });
  const holder = h('div', { id: idPrefix + '-list' });
  container.append(
    h('div', { class: 'toolbar' }, filterInput, h('label', { class: 'inline' }, regexBox, 'Regex'), pager),
    holder,
  );
  let latest = 0; // answers may arrive out of order: only the newest request's is shown
  async function update() {
    latest += 1;
    const mine = latest;
    const params = new URLSearchParams({
      page: String(state.page),
      page_size: '100',
      name: state.filter,
      use_regex: String(state.regex),
    });
    if (state.sort) {
      params.set('sort', state.sort);
      params.set('sort_reverse', String(state.reverse));
    }
    const data = await api('GET', path + '?' + params.toString());
    if (mine !== latest) return;
    const items = Array.isArray(data) ? data : data.items;
    sorting.key = state.sort;
    sorting.reverse = state.reverse;
    holder.replaceChildren(table(columns, items, { id: idPrefix + '-table', class: 'list' }, sorting));
    if (!Array.isArray(data)) {
      const pages = Math.max(1, data.page_count || 1);
      if (state.page > pages) state.page = pages;
      pager.replaceChildren(
        button('<', () => {
          if (state.page > 1) {
            state.page -= 1;
            update();
          }
        }),
        ` Page ${data.page} of ${pages} (${fmtNum(data.filtered_count)} of ${fmtNum(data.total_count)}) `,
        button('>', () => {
          if (state.page < pages) {
            state.page += 1;
            update();
          }
        }),
      );
    }
  }
  live(update, holder);
}

function objectLink(kind, vhost, name, label) {
  const href = '#/' + kind + '/' + enc(vhost) + '/' + enc(name);
  return h('a', { href }, label === undefined ? name : label);
}

// ---------------------------------------------------------------- Overview

function pageOverview(root) {
  const totals = h('div', { id: 'overview-totals' });
  const canvas = h('canvas', { id: 'rate-chart', width: 720, height: 200 });
  const legend = h('div', { class: 'legend' });
  const nodes = h('div', { id: 'overview-nodes' });
  const listeners = h('div', { id: 'overview-listeners' });
  root.append(
    h('h1', {}, 'Overview'),
    section('Totals', totals),
    section('Message rates', canvas, legend, h('p', { class: 'muted' }, 'Sampled every 5 s while this page is open (the last 10 minutes).')),
    section('Nodes', nodes),
    section('Listeners', listeners),
  );
  live(async () => {
    const o = await api('GET', '/overview');
    const objects = o.object_totals || {};
    const queued = o.queue_totals || {};
    totals.replaceChildren(
      h(
        'div',
        { class: 'cards' },
        [
          ['Connections', objects.connections],
          ['Channels', objects.channels],
          ['Exchanges', objects.exchanges],
          ['Queues', objects.queues],
          ['Consumers', objects.consumers],
          ['Ready', queued.messages_ready],
          ['Unacked', queued.messages_unacknowledged],
          ['Total messages', queued.messages],
        ].map(([k, v]) => h('div', { class: 'card' }, h('div', { class: 'num' }, fmtNum(v || 0)), h('div', {}, k))),
      ),
      h('p', { class: 'muted' }, `${o.product_name} ${o.product_version} (API ${o.rabbitmq_version}), node ${o.node}`),
    );
    const ms = o.message_stats || {};
    const rate = (k) => {
      const details = ms[k + '_details'];
      return details && typeof details.rate === 'number' ? details.rate : 0;
    };
    const sample = {};
    for (const [key] of SERIES) sample[key] = rate(key);
    ui.rates.push(sample);
    if (ui.rates.length > CHART_POINTS) ui.rates.shift();
    drawChart(canvas, legend, ui.rates);
    listeners.replaceChildren(
      table(
        [
          ['Protocol', (l) => l.protocol],
          ['Bound to', (l) => l.ip_address],
          ['Port', (l) => fmtValue(l.port)],
        ],
        o.listeners || [],
        { id: 'listeners-table', class: 'list' },
      ),
    );
  }, totals);
  live(async () => {
    const list = await api('GET', '/nodes');
    nodes.replaceChildren(
      table(
        [
          ['Name', (n) => n.name],
          ['Memory', (n) => fmtBytes(n.mem_used) + ' of ' + fmtBytes(n.mem_limit)],
          ['Disk free', (n) => fmtBytes(n.disk_free) + ' (limit ' + fmtBytes(n.disk_free_limit) + ')'],
          ['File descriptors', (n) => fmtNum(n.fd_used) + ' of ' + fmtNum(n.fd_total)],
          ['Alarms', (n) => alarms(n)],
          ['Uptime', (n) => fmtUptime(n.uptime)],
        ],
        list,
        { id: 'nodes-table', class: 'list' },
      ),
    );
  }, nodes);
}

function alarms(node) {
  const on = [];
  if (node.mem_alarm) on.push('memory');
  if (node.disk_free_alarm) on.push('disk');
  if (!on.length) return h('span', { class: 'good' }, 'none');
  return h('span', { class: 'alarm' }, on.join(', ') + ' alarm');
}

const DURABILITY = [
  ['true', 'Durable'],
  ['false', 'Transient'],
];

const SERIES = [
  ['publish', 'Publish', '#d9480f'],
  ['confirm', 'Confirm', '#7048e8'],
  ['deliver_get', 'Deliver / get', '#1c7ed6'],
  ['ack', 'Ack', '#2b8a3e'],
];

function drawChart(canvas, legend, samples) {
  if (canvas.clientWidth && canvas.width !== canvas.clientWidth) canvas.width = canvas.clientWidth;
  const ctx = canvas.getContext('2d');
  const w = canvas.width;
  const hgt = canvas.height;
  const pad = 30;
  ctx.clearRect(0, 0, w, hgt);
  let max = 1;
  for (const s of samples) for (const [k] of SERIES) max = Math.max(max, s[k]);
  ctx.strokeStyle = '#ccc';
  ctx.fillStyle = '#555';
  ctx.font = '11px sans-serif';
  ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i += 1) {
    const y = pad / 2 + ((hgt - pad) * i) / 4;
    ctx.beginPath();
    ctx.moveTo(pad + 20, y);
    ctx.lineTo(w - 5, y);
    ctx.stroke();
    ctx.fillText(((max * (4 - i)) / 4).toFixed(max < 10 ? 1 : 0), 2, y + 4);
  }
  const step = (w - pad - 25) / Math.max(1, CHART_POINTS - 1);
  const x0 = w - 5 - step * (samples.length - 1);
  for (const [key, , color] of SERIES) {
    ctx.strokeStyle = color;
    ctx.lineWidth = 2;
    ctx.beginPath();
    samples.forEach((s, i) => {
      const x = x0 + i * step;
      const y = pad / 2 + (hgt - pad) * (1 - s[key] / max);
      if (i === 0) ctx.moveTo(x, y);
      else ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  const last = samples[samples.length - 1] || {};
  legend.replaceChildren(
    ...SERIES.map(([key, label, color]) => {
      const swatch = h('span', { class: 'swatch' });
      swatch.style.background = color; // a CSSOM property, which the page's CSP allows
      return h('span', { class: 'legend-item' }, swatch, label + ' ' + (last[key] || 0).toFixed(1) + '/s');
    }),
  );
}

// ---------------------------------------------------------------- Connections and channels

function pageConnections(root) {
  const reason = h('input', { id: 'close-reason', value: 'Closed via management UI', size: 40 });
  const list = h('div');
  const toolbar = h('div', { class: 'toolbar' }, field('Reason sent when closing', reason));
  root.append(h('h1', {}, 'Connections'), h('section', {}, toolbar, list));
  pagedList(
    list,
    '/connections',
    [
      ['Name', (c) => c.name, 'name'],
      ['User', (c) => c.user, 'user'],
      ['Vhost', (c) => c.vhost, 'vhost'],
      ['State', (c) => c.state, 'state'],
      ['Channels', (c) => fmtNum(c.channels), 'channels'],
      ['Client', (c) => clientName(c)],
      ['From client', (c) => fmtBytes(c.recv_oct), 'recv_oct'],
      ['To client', (c) => fmtBytes(c.send_oct), 'send_oct'],
      [
        '',
        (c) =>
          button(
            'Close',
            () => {
              if (!confirm('Close connection ' + c.name + '?')) return;
              act(
                () => api('DELETE', '/connections/' + enc(c.name), undefined, { 'X-Reason': reason.value }),
                'Connection ' + c.name + ' closed.',
              );
            },
            { class: 'danger close-connection', 'data-name': c.name },
          ),
      ],
    ],
    'connections',
  );
}

function clientName(c) {
  const props = c.client_properties || {};
  const product = [props.product, props.version].filter(Boolean).map(String).join(' ');
  const named = c.user_provided_name || props.connection_name;
  return named ? named + (product ? ' (' + product + ')' : '') : product;
}

function pageChannels(root) {
  const list = h('div');
  root.append(h('h1', {}, 'Channels'), h('section', {}, list));
  pagedList(
    list,
    '/channels',
    [
      ['Channel', (c) => c.name, 'name'],
      ['User', (c) => c.user, 'user'],
      ['Vhost', (c) => c.vhost, 'vhost'],
      ['Mode', (c) => [c.confirm ? 'confirm' : '', c.transactional ? 'tx' : ''].filter(Boolean).join(' ')],
      ['State', (c) => c.state],
      ['Prefetch', (c) => fmtNum(c.prefetch_count)],
      ['Unacked', (c) => fmtNum(c.messages_unacknowledged), 'messages_unacknowledged'],
      ['Consumers', (c) => fmtNum(c.consumer_count), 'consumer_count'],
      ['Publish', (c) => fmtRate(c.message_stats, 'publish')],
      ['Deliver / get', (c) => fmtRate(c.message_stats, 'deliver_get')],
      ['Ack', (c) => fmtRate(c.message_stats, 'ack')],
    ],
    'channels',
  );
}

// ---------------------------------------------------------------- Exchanges

function exchangeName(name) {
  return name === '' ? '(AMQP default)' : name;
}

function pageExchanges(root) {
  const list = h('div');
  root.append(h('h1', {}, 'Exchanges'), h('section', {}, list), declareExchangeForm());
  pagedList(
    list,
    '/exchanges',
    [
      ['Vhost', (x) => x.vhost, 'vhost'],
      ['Name', (x) => objectLink('exchanges', x.vhost, x.name === '' ? 'amq.default' : x.name, exchangeName(x.name)), 'name'],
      ['Type', (x) => x.type, 'type'],
      ['Features', (x) => features(x)],
      ['Rate in', (x) => fmtRate(x.message_stats, 'publish_in')],
      ['Rate out', (x) => fmtRate(x.message_stats, 'publish_out')],
    ],
    'exchanges',
  );
}

function declareExchangeForm() {
  const vhost = vhostSelect('exchange-declare-vhost');
  const name = h('input', { id: 'exchange-declare-name', required: true });
  const type = choice('exchange-declare-type', ['direct', 'fanout', 'topic', 'headers']);
  const durable = choice('exchange-declare-durable', DURABILITY);
  const autoDelete = h('input', { type: 'checkbox', id: 'exchange-declare-auto-delete' });
  const internal = h('input', { type: 'checkbox', id: 'exchange-declare-internal' });
  const args = h('textarea', { id: 'exchange-declare-arguments', rows: 2, placeholder: '{"alternate-exchange": "ae"}' });
  const form = h(
    'form',
    {
      id: 'exchange-declare',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = {
            type: type.value,
            durable: durable.value === 'true',
            auto_delete: autoDelete.checked,
            internal: internal.checked,
            arguments: parseJsonField(args.value, 'Arguments'),
          };
          await api('PUT', '/exchanges/' + enc(vhost.value) + '/' + enc(name.value), body);
          return name.value;
        }, (n) => 'Exchange ' + n + ' declared.');
      },
    },
    field('Virtual host', vhost),
    field('Name', name),
    field('Type', type),
    field('Durability', durable),
    field('Auto delete', autoDelete),
    field('Internal', internal),
    field('Arguments (JSON)', args),
    h('button', { type: 'submit', id: 'exchange-declare-submit' }, 'Add exchange'),
  );
  return section('Add a new exchange', form);
}

function pageExchange(vhost, name) {
  const root = $('page');
  const path = '/exchanges/' + enc(vhost) + '/' + enc(name);
  const isDefault = name === 'amq.default';
  const details = h('div', { id: 'exchange-details' });
  const outgoing = h('div', { id: 'exchange-bindings-source' });
  const incoming = h('div', { id: 'exchange-bindings-destination' });
  root.append(
    h('h1', {}, 'Exchange ', h('span', { class: 'objname' }, exchangeName(isDefault ? '' : name)), h('span', { class: 'muted' }, ' in ' + vhost)),
    section('Details', details),
    section('Bindings from this exchange', outgoing, isDefault ? null : bindForm(vhost, 'e', name)),
    section('Bindings to this exchange', incoming),
    publishForm(vhost, name),
  );
  if (!isDefault) root.append(deleteExchangeSection(path, name));
  live(async () => {
    const x = await api('GET', path);
    details.replaceChildren(
      kvTable([
        ['Type', x.type],
        ['Features', features(x)],
        ['Arguments', fmtValue(x.arguments)],
        ['Policy', fmtValue(x.policy)],
        ['Rate in', fmtRate(x.message_stats, 'publish_in')],
        ['Rate out', fmtRate(x.message_stats, 'publish_out')],
      ]),
    );
  }, details);
  if (!isDefault) {
    live(async () => outgoing.replaceChildren(bindingsTable(await api('GET', path + '/bindings/source'), 'destination', vhost)), outgoing);
  } else {
    outgoing.replaceChildren(h('p', { class: 'muted' }, 'The default exchange binds every queue by its name.'));
  }
  live(async () => incoming.replaceChildren(bindingsTable(await api('GET', path + '/bindings/destination'), 'source', vhost)), incoming);
}

function deleteExchangeSection(path, name) {
  const remove = () => {
    if (!confirm('Delete exchange ' + name + '?')) return;
    act(() => api('DELETE', path), 'Exchange ' + name + ' deleted.').then((r) => {
      if (r !== undefined) {
        ui.keepFlash = true;
        location.hash = '#/exchanges';
      }
    });
  };
  return section('Delete this exchange', button('Delete', remove, { class: 'danger', id: 'exchange-delete' }));
}

function bindingsTable(list, side, vhost) {
  return table(
    [
      [
        side === 'source' ? 'From' : 'To',
        (b) => {
          if (side === 'source') return objectLink('exchanges', vhost, b.source === '' ? 'amq.default' : b.source, exchangeName(b.source));
          return objectLink(b.destination_type === 'queue' ? 'queues' : 'exchanges', vhost, b.destination);
        },
      ],
      ['Kind', (b) => (side === 'source' ? 'exchange' : b.destination_type)],
      ['Routing key', (b) => b.routing_key],
      ['Arguments', (b) => fmtValue(b.arguments)],
      [
        '',
        (b) =>
          b.source === ''
            ? ''
            : button(
                'Unbind',
                () => {
                  const kind = b.destination_type === 'queue' ? 'q' : 'e';
                  const url = '/bindings/' + enc(vhost) + '/e/' + enc(b.source) + '/' + kind + '/' + enc(b.destination) + '/' + enc(b.properties_key);
                  act(() => api('DELETE', url), 'Binding removed.');
                },
                { class: 'danger' },
              ),
      ],
    ],
    list,
    { class: 'list bindings' },
  );
}

/** Bind from (kind 'e') an exchange to a queue/exchange, or to (kind 'q') a queue from an exchange. */
function bindForm(vhost, kind, name) {
  const prefix = kind === 'q' ? 'queue-bind' : 'exchange-bind';
  const destType = choice(prefix + '-dest-type', [['q', 'To queue'], ['e', 'To exchange']]);
  const other = h('input', { id: prefix + '-other', required: true });
  const key = h('input', { id: prefix + '-routing-key' });
  const args = h('textarea', { id: prefix + '-arguments', rows: 2, placeholder: '{}' });
  const form = h(
    'form',
    {
      id: prefix,
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = { routing_key: key.value, arguments: parseJsonField(args.value, 'Arguments') };
          let url;
          if (kind === 'q') url = '/bindings/' + enc(vhost) + '/e/' + enc(other.value) + '/q/' + enc(name);
          else url = '/bindings/' + enc(vhost) + '/e/' + enc(name) + '/' + destType.value + '/' + enc(other.value);
          await api('POST', url, body);
        }, 'Binding added.');
      },
    },
    kind === 'q' ? null : field('Destination', destType),
    field(kind === 'q' ? 'From exchange' : 'Name', other),
    field('Routing key', key),
    field('Arguments (JSON)', args),
    h('button', { type: 'submit', id: prefix + '-submit' }, 'Bind'),
  );
  return h('details', {}, h('summary', {}, 'Add binding'), form);
}

function publishForm(vhost, name) {
  const key = h('input', { id: 'publish-routing-key' });
  const mode = choice('publish-delivery-mode', [['1', '1 - Non-persistent'], ['2', '2 - Persistent']]);
  const headers = h('textarea', { id: 'publish-headers', rows: 2, placeholder: '{"x-my-header": "value"}' });
  const props = h('textarea', { id: 'publish-properties', rows: 2, placeholder: '{"content_type": "text/plain", "message_id": "m-1"}' });
  const payload = h('textarea', { id: 'publish-payload', rows: 4 });
  const encoding = choice('publish-encoding', [['string', 'String'], ['base64', 'Base64']]);
  const form = h(
    'form',
    {
      id: 'publish',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const properties = parseJsonField(props.value, 'Properties');
          properties.delivery_mode = Number(mode.value);
          const hdrs = parseJsonField(headers.value, 'Headers');
          if (Object.keys(hdrs).length) properties.headers = hdrs;
          const body = { properties, routing_key: key.value, payload: payload.value, payload_encoding: encoding.value };
          return api('POST', '/exchanges/' + enc(vhost) + '/' + enc(name) + '/publish', body);
        }, (r) => (r && r.routed ? 'Message published.' : 'Message published, but not routed.'));
      },
    },
    field('Routing key', key),
    field('Delivery mode', mode),
    field('Headers (JSON)', headers),
    field('Properties (JSON)', props),
    field('Payload', payload),
    field('Payload encoding', encoding),
    h('button', { type: 'submit', id: 'publish-submit' }, 'Publish message'),
  );
  return section('Publish message', form);
}

// ---------------------------------------------------------------- Queues

function pageQueues(root) {
  const list = h('div');
  root.append(h('h1', {}, 'Queues'), h('section', {}, list), declareQueueForm(), findForm());
  pagedList(
    list,
    '/queues',
    [
      ['Vhost', (q) => q.vhost, 'vhost'],
      ['Name', (q) => objectLink('queues', q.vhost, q.name), 'name'],
      ['Type', (q) => q.type || 'classic'],
      ['Features', (q) => features(q)],
      ['State', (q) => q.state],
      ['Ready', (q) => fmtNum(q.messages_ready), 'messages_ready'],
      ['Unacked', (q) => fmtNum(q.messages_unacknowledged), 'messages_unacknowledged'],
      ['Total', (q) => h('span', { class: 'messages', 'data-queue': q.name }, fmtNum(q.messages)), 'messages'],
      ['Consumers', (q) => fmtNum(q.consumers), 'consumers'],
      ['Incoming', (q) => fmtRate(q.message_stats, 'publish')],
      ['Deliver / get', (q) => fmtRate(q.message_stats, 'deliver_get')],
      ['Ack', (q) => fmtRate(q.message_stats, 'ack')],
    ],
    'queues',
  );
}

function declareQueueForm() {
  const vhost = vhostSelect('queue-declare-vhost');
  const name = h('input', { id: 'queue-declare-name', required: true });
  const durable = choice('queue-declare-durable', DURABILITY);
  const autoDelete = h('input', { type: 'checkbox', id: 'queue-declare-auto-delete' });
  const args = h('textarea', { id: 'queue-declare-arguments', rows: 2, placeholder: '{"x-message-ttl": 60000}' });
  const form = h(
    'form',
    {
      id: 'queue-declare',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = { durable: durable.value === 'true', auto_delete: autoDelete.checked, arguments: parseJsonField(args.value, 'Arguments') };
          await api('PUT', '/queues/' + enc(vhost.value) + '/' + enc(name.value), body);
          return name.value;
        }, (n) => 'Queue ' + n + ' declared.');
      },
    },
    field('Virtual host', vhost),
    field('Name', name),
    field('Durability', durable),
    field('Auto delete', autoDelete),
    field('Arguments (JSON)', args),
    h('button', { type: 'submit', id: 'queue-declare-submit' }, 'Add queue'),
  );
  return section('Add a new queue', form);
}

/** trimq's GET /api/vhosts/{vhost}/find: where a message is, found by its id, nothing taken. */
function findForm() {
  const vhost = vhostSelect('find-vhost');
  const kind = choice('find-kind', [['message_id', 'Message id'], ['correlation_id', 'Correlation id']]);
  const id = h('input', { id: 'find-id', required: true });
  const out = h('div', { id: 'find-output' });
  const form = h(
    'form',
    {
      id: 'find',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const params = new URLSearchParams({ [kind.value]: id.value });
          const list = await api('GET', '/vhosts/' + enc(vhost.value) + '/find?' + params.toString());
          out.replaceChildren(messagesView(list, 'find-result'));
          return list;
        }, (l) => 'Copies found: ' + fmtNum(l.length) + '.');
      },
    },
    field('Virtual host', vhost),
    field('Look for', kind),
    field('Id', id),
    h('button', { type: 'submit', id: 'find-submit' }, 'Find'),
  );
  const note = h('p', { class: 'muted' }, 'Every queue of the virtual host, ready and unacked messages; nothing is taken.');
  return section('Find a message', note, form, out);
}

function pageQueue(vhost, name) {
  const root = $('page');
  const path = '/queues/' + enc(vhost) + '/' + enc(name);
  const details = h('div', { id: 'queue-details' });
  const consumers = h('div', { id: 'queue-consumers' });
  const bindings = h('div', { id: 'queue-bindings' });
  root.append(
    h('h1', {}, 'Queue ', h('span', { class: 'objname' }, name), h('span', { class: 'muted' }, ' in ' + vhost)),
    section('Details', details),
    section('Consumers', consumers),
    section('Bindings', bindings, bindForm(vhost, 'q', name)),
    getMessagesForm(path),
    peekForm(path),
    section(
      'Purge or delete',
      h(
        'div',
        { class: 'toolbar' },
        button(
          'Purge messages',
          () => {
            if (!confirm('Purge every ready message of ' + name + '?')) return;
            act(() => api('DELETE', path + '/contents'), 'Queue ' + name + ' purged.');
          },
          { class: 'danger', id: 'queue-purge' },
        ),
        button(
          'Delete queue',
          () => {
            if (!confirm('Delete queue ' + name + '?')) return;
            act(() => api('DELETE', path), 'Queue ' + name + ' deleted.').then((r) => {
              if (r !== undefined) {
              ui.keepFlash = true;
              location.hash = '#/queues';
            }
            });
          },
          { class: 'danger', id: 'queue-delete' },
        ),
      ),
    ),
  );
  live(async () => {
    const q = await api('GET', path);
    details.replaceChildren(
      kvTable(
        [
          ['Type', q.type || 'classic'],
          ['Features', features(q)],
          ['Arguments', fmtValue(q.arguments)],
          ['Policy', fmtValue(q.policy)],
          ['State', fmtValue(q.state)],
          ['Ready', h('span', { id: 'queue-ready' }, fmtNum(q.messages_ready))],
          ['Unacked', h('span', { id: 'queue-unacked' }, fmtNum(q.messages_unacknowledged))],
          ['Total', h('span', { id: 'queue-messages' }, fmtNum(q.messages))],
          ['Consumers', fmtNum(q.consumers)],
          ['Incoming', fmtRate(q.message_stats, 'publish')],
          ['Deliver / get', fmtRate(q.message_stats, 'deliver_get')],
          ['Ack', fmtRate(q.message_stats, 'ack')],
        ],
        { id: 'queue-details-table' },
      ),
    );
    consumers.replaceChildren(
      table(
        [
          ['Channel', (c) => (c.channel_details ? c.channel_details.name : '')],
          ['Consumer tag', (c) => c.consumer_tag],
          ['Ack required', (c) => fmtValue(c.ack_required)],
          ['Exclusive', (c) => fmtValue(c.exclusive)],
          ['Prefetch', (c) => fmtNum(c.prefetch_count)],
          ['Arguments', (c) => fmtValue(c.arguments)],
        ],
        q.consumer_details || [],
        { class: 'list' },
      ),
    );
  }, details);
  live(async () => bindings.replaceChildren(bindingsTable(await api('GET', path + '/bindings'), 'source', vhost)), bindings);
}

function messagesView(list, id) {
  if (!Array.isArray(list) || !list.length) return h('p', { id, class: 'muted' }, 'No messages.');
  return h(
    'div',
    { id },
    list.map((m, i) => {
      const pairs = [];
      for (const [k, v] of Object.entries(m)) {
        if (k === 'payload') continue;
        pairs.push([k, fmtValue(v)]);
      }
      if ('payload' in m) pairs.push(['payload', h('pre', { class: 'payload' }, fmtValue(m.payload))]);
      return h('div', { class: 'message' }, h('h3', {}, 'Message ' + (i + 1)), kvTable(pairs));
    }),
  );
}

function getMessagesForm(path) {
  const ackmode = h(
    'select',
    { id: 'get-ackmode' },
    [
      ['ack_requeue_true', 'Nack message requeue true'],
      ['ack_requeue_false', 'Automatic ack'],
      ['reject_requeue_true', 'Reject requeue true'],
      ['reject_requeue_false', 'Reject requeue false'],
    ].map(([v, t]) => h('option', { value: v }, t)),
  );
  const encoding = choice('get-encoding', [['auto', 'Automatic string/base64'], ['base64', 'Base64']]);
  const count = h('input', { id: 'get-count', type: 'number', min: 1, value: '1' });
  const out = h('div', { id: 'get-output' });
  const form = h(
    'form',
    {
      id: 'get-messages',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = { count: Number(count.value), ackmode: ackmode.value, encoding: encoding.value, truncate: 50000 };
          const list = await api('POST', path + '/get', body);
          out.replaceChildren(messagesView(list, 'get-messages-result'));
          return list;
        }, (l) => fmtNum(l.length) + ' message(s) fetched.');
      },
    },
    field('Ack mode', ackmode),
    field('Encoding', encoding),
    field('Messages', count),
    h('button', { type: 'submit', id: 'get-submit' }, 'Get message(s)'),
  );
  const note = h('p', { class: 'muted' }, 'Getting takes messages from the queue (and requeues them as the ack mode says).');
  return section('Get messages', note, form, out);
}

function peekForm(path) {
  const offset = h('input', { id: 'peek-offset', type: 'number', min: 0, value: '0' });
  const count = h('input', { id: 'peek-count', type: 'number', min: 1, value: '10' });
  const state = choice('peek-state', [['', 'Ready'], ['unacked', 'Unacked']]);
  const out = h('div', { id: 'peek-output' });
  const form = h(
    'form',
    {
      id: 'peek',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const params = new URLSearchParams({ offset: offset.value, count: count.value });
          if (state.value) params.set('state', state.value);
          const data = await api('GET', path + '/messages?' + params.toString());
          const list = Array.isArray(data) ? data : (data && data.items) || [];
          out.replaceChildren(messagesView(list, 'peek-result'));
          return list;
        }, (l) => fmtNum(l.length) + ' message(s) shown.');
      },
    },
    field('State', state),
    field('Offset', offset),
    field('Count', count),
    h('button', { type: 'submit', id: 'peek-submit' }, 'Peek'),
  );
  const note = h('p', { class: 'muted' }, 'Shows messages in queue order without delivering them.');
  return section('Peek at messages', note, form, out);
}

// ---------------------------------------------------------------- Admin

function pageAdmin(root) {
  const users = h('div', { id: 'users' });
  const vhosts = h('div', { id: 'vhosts' });
  const perms = h('div', { id: 'permissions' });
  const topicPerms = h('div', { id: 'topic-permissions' });
  const policies = h('div', { id: 'policies' });
  root.append(
    h('h1', {}, 'Admin'),
    h(
      'p',
      { class: 'subnav' },
      ['Users', 'Virtual hosts', 'Permissions', 'Topic permissions', 'Policies', 'Definitions'].map((t) =>
        h('a', { href: '#/admin', onclick: (e) => jumpTo(e, 'admin-' + t.toLowerCase().replace(' ', '-')) }, t),
      ),
    ),
    h('section', { id: 'admin-users' }, h('h2', {}, 'Users'), users, userForm()),
    h('section', { id: 'admin-virtual-hosts' }, h('h2', {}, 'Virtual hosts'), vhosts, vhostForm()),
    h('section', { id: 'admin-permissions' }, h('h2', {}, 'Permissions'), perms, permissionForm()),
    h('section', { id: 'admin-topic-permissions' }, h('h2', {}, 'Topic permissions'), topicPerms, topicPermissionForm()),
    h('section', { id: 'admin-policies' }, h('h2', {}, 'Policies'), policies, policyForm()),
    h('section', { id: 'admin-definitions' }, h('h2', {}, 'Definitions'), definitionsForms()),
  );
  live(async () => {
    const list = await api('GET', '/users');
    users.replaceChildren(
      table(
        [
          ['Name', (u) => u.name],
          ['Tags', (u) => fmtTags(u.tags)],
          ['Can log in with password', (u) => (u.password_hash ? 'yes' : 'no')],
          ['', (u) => deleteButton('user ' + u.name, '/users/' + enc(u.name))],
        ],
        list,
        { class: 'list', id: 'users-table' },
      ),
    );
  }, users);
  live(async () => {
    const list = await api('GET', '/vhosts');
    vhosts.replaceChildren(
      table(
        [
          ['Name', (v) => v.name],
          ['Description', (v) => fmtValue(v.description)],
          ['Tags', (v) => fmtTags(v.tags)],
          ['Messages', (v) => fmtNum(v.messages)],
          ['', (v) => deleteButton('virtual host ' + v.name, '/vhosts/' + enc(v.name))],
        ],
        list,
        { class: 'list', id: 'vhosts-table' },
      ),
    );
  }, vhosts);
  live(async () => {
    const list = await api('GET', '/permissions');
    perms.replaceChildren(
      table(
        [
          ['User', (p) => p.user],
          ['Vhost', (p) => p.vhost],
          ['Configure', (p) => p.configure],
          ['Write', (p) => p.write],
          ['Read', (p) => p.read],
          ['', (p) => deleteButton('permissions of ' + p.user + ' in ' + p.vhost, '/permissions/' + enc(p.vhost) + '/' + enc(p.user), 'Clear')],
        ],
        list,
        { class: 'list', id: 'permissions-table' },
      ),
    );
  }, perms);
  live(async () => {
    const list = await api('GET', '/topic-permissions');
    topicPerms.replaceChildren(
      table(
        [
          ['User', (p) => p.user],
          ['Vhost', (p) => p.vhost],
          ['Exchange', (p) => p.exchange],
          ['Write', (p) => p.write],
          ['Read', (p) => p.read],
          ['', (p) => deleteButton('topic permissions of ' + p.user + ' in ' + p.vhost, '/topic-permissions/' + enc(p.vhost) + '/' + enc(p.user), 'Clear')],
        ],
        list,
        { class: 'list', id: 'topic-permissions-table' },
      ),
    );
  }, topicPerms);
  live(async () => {
    const list = await api('GET', '/policies');
    policies.replaceChildren(
      table(
        [
          ['Vhost', (p) => p.vhost],
          ['Name', (p) => p.name],
          ['Pattern', (p) => p.pattern],
          ['Apply to', (p) => p['apply-to']],
          ['Definition', (p) => fmtValue(p.definition)],
          ['Priority', (p) => fmtValue(p.priority)],
          ['', (p) => deleteButton('policy ' + p.name, '/policies/' + enc(p.vhost) + '/' + enc(p.name))],
        ],
        list,
        { class: 'list', id: 'policies-table' },
      ),
    );
  }, policies);
}

function jumpTo(event, id) {
  event.preventDefault();
  $(id).scrollIntoView();
}

function deleteButton(what, path, label) {
  return button(
    label || 'Delete',
    () => {
      if (!confirm((label || 'Delete') + ' ' + what + '?')) return;
      act(() => api('DELETE', path), (label || 'Delete') + ': ' + what + ' done.');
    },
    { class: 'danger' },
  );
}

function userForm() {
  const name = h('input', { id: 'user-name', required: true, autocomplete: 'off' });
  const pass = h('input', { id: 'user-password', type: 'password', autocomplete: 'new-password' });
  const tags = h('input', { id: 'user-tags', placeholder: 'administrator, monitoring, policymaker, management' });
  const form = h(
    'form',
    {
      id: 'user-form',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = { tags: tags.value.split(',').map((t) => t.trim()).filter(Boolean).join(',') };
          if (pass.value) body.password = pass.value;
          else body.password_hash = '';
          await api('PUT', '/users/' + enc(name.value), body);
          pass.value = '';
          return name.value;
        }, (n) => 'User ' + n + ' saved.');
      },
    },
    field('Username', name),
    field('Password (empty: no password login)', pass),
    field('Tags', tags),
    h('button', { type: 'submit' }, 'Add / update user'),
  );
  return h('details', {}, h('summary', {}, 'Add or update a user'), form);
}

function vhostForm() {
  const name = h('input', { id: 'vhost-name', required: true });
  const description = h('input', { id: 'vhost-description' });
  const tags = h('input', { id: 'vhost-tags' });
  const form = h(
    'form',
    {
      id: 'vhost-form',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          await api('PUT', '/vhosts/' + enc(name.value), { description: description.value, tags: tags.value });
          loadVhosts();
          return name.value;
        }, (n) => 'Virtual host ' + n + ' saved.');
      },
    },
    field('Name', name),
    field('Description', description),
    field('Tags', tags),
    h('button', { type: 'submit' }, 'Add virtual host'),
  );
  return h('details', {}, h('summary', {}, 'Add a virtual host'), form);
}

function permissionForm() {
  const user = h('input', { id: 'perm-user', required: true });
  const vhost = vhostSelect('perm-vhost');
  const configure = h('input', { id: 'perm-configure', value: '.*' });
  const write = h('input', { id: 'perm-write', value: '.*' });
  const read = h('input', { id: 'perm-read', value: '.*' });
  const form = h(
    'form',
    {
      id: 'perm-form',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(
          () => api('PUT', '/permissions/' + enc(vhost.value) + '/' + enc(user.value), { configure: configure.value, write: write.value, read: read.value }),
          'Permissions set.',
        );
      },
    },
    field('User', user),
    field('Virtual host', vhost),
    field('Configure regexp', configure),
    field('Write regexp', write),
    field('Read regexp', read),
    h('button', { type: 'submit' }, 'Set permission'),
  );
  return h('details', {}, h('summary', {}, 'Set permissions'), form);
}

function topicPermissionForm() {
  const user = h('input', { id: 'topic-perm-user', required: true });
  const vhost = vhostSelect('topic-perm-vhost');
  const exchange = h('input', { id: 'topic-perm-exchange', required: true, value: 'amq.topic' });
  const write = h('input', { id: 'topic-perm-write', value: '.*' });
  const read = h('input', { id: 'topic-perm-read', value: '.*' });
  const form = h(
    'form',
    {
      id: 'topic-perm-form',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(
          () => api('PUT', '/topic-permissions/' + enc(vhost.value) + '/' + enc(user.value), { exchange: exchange.value, write: write.value, read: read.value }),
          'Topic permissions set.',
        );
      },
    },
    field('User', user),
    field('Virtual host', vhost),
    field('Exchange (a topic exchange)', exchange),
    field('Write regexp (routing keys)', write),
    field('Read regexp (binding keys)', read),
    h('button', { type: 'submit' }, 'Set topic permission'),
  );
  return h('details', {}, h('summary', {}, 'Set topic permissions'), form);
}

function policyForm() {
  const vhost = vhostSelect('policy-vhost');
  const name = h('input', { id: 'policy-name', required: true });
  const pattern = h('input', { id: 'policy-pattern', required: true, placeholder: '^orders\\.' });
  const applyTo = choice('policy-apply-to', ['all', 'queues', 'exchanges']);
  const priority = h('input', { id: 'policy-priority', type: 'number', value: '0' });
  const definition = h('textarea', { id: 'policy-definition', rows: 3, placeholder: '{"max-length": 1000}' });
  const form = h(
    'form',
    {
      id: 'policy-form',
      class: 'stack',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          const body = {
            pattern: pattern.value,
            'apply-to': applyTo.value,
            priority: Number(priority.value),
            definition: parseJsonField(definition.value, 'Definition'),
          };
          await api('PUT', '/policies/' + enc(vhost.value) + '/' + enc(name.value), body);
          return name.value;
        }, (n) => 'Policy ' + n + ' saved.');
      },
    },
    field('Virtual host', vhost),
    field('Name', name),
    field('Pattern', pattern),
    field('Apply to', applyTo),
    field('Priority', priority),
    field('Definition (JSON)', definition),
    h('button', { type: 'submit' }, 'Add / update policy'),
  );
  return h('details', {}, h('summary', {}, 'Add or update a policy'), form);
}

function definitionsForms() {
  const exportLink = h('a', { id: 'definitions-download', hidden: true }, 'Save file');
  const exportButton = button(
    'Export definitions',
    () =>
      act(async () => {
        const defs = await api('GET', '/definitions');
        const blob = new Blob([JSON.stringify(defs, null, 2)], { type: 'application/json' });
        if (exportLink.href) URL.revokeObjectURL(exportLink.href);
        exportLink.href = URL.createObjectURL(blob);
        exportLink.download = 'trimq-definitions.json';
        exportLink.hidden = false;
        exportLink.click();
      }, 'Definitions exported.'),
    { id: 'definitions-export' },
  );
  const file = h('input', { type: 'file', name: 'file', id: 'definitions-file', accept: '.json,application/json' });
  const target = h('select', { id: 'definitions-vhost', name: 'vhost-upload' });
  const fillTargets = () => {
    const chosen = target.value;
    target.replaceChildren(h('option', { value: '' }, 'All (a whole broker\'s file)'), ...ui.vhosts.map((n) => h('option', { value: n }, n)));
    if (ui.vhosts.includes(chosen)) target.value = chosen;
  };
  fillTargets();
  loadVhosts().then(fillTargets);
  const importForm = h(
    'form',
    {
      id: 'definitions-import',
      class: 'stack',
      method: 'post',
      enctype: 'multipart/form-data',
      onsubmit: (e) => {
        e.preventDefault();
        act(async () => {
          if (!file.files.length) throw new Error('Choose a definitions file first.');
          // the file as RabbitMQ's page sends it: the multipart part `file`
          const form = new FormData();
          form.append('file', file.files[0]);
          await api('POST', '/definitions' + (target.value ? '/' + enc(target.value) : ''), form);
          loadVhosts().then(fillTargets);
        }, 'Definitions imported.');
      },
    },
    field('Definitions file', file),
    field('Import into', target),
    h('button', { type: 'submit', id: 'definitions-import-submit' }, 'Upload and import'),
  );
  return h('div', {}, h('div', { class: 'toolbar' }, exportButton, ' ', exportLink), h('h3', {}, 'Import'), importForm);
}

// ---------------------------------------------------------------- start

window.addEventListener('hashchange', route);
document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', login);
  $('logout').addEventListener('click', () => logout());
  if (authHeader()) showApp();
});
