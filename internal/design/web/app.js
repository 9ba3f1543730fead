// flusso design: the browser side. The server owns every rule (loader,
// checks, mapping, hash, builder); this file edits the schema's model (the
// YAML document as JSON, keys in file order) and shows what the server says.
'use strict';

const SCALARS = ['text', 'identifier', 'keyword', 'enum', 'uuid', 'boolean', 'short', 'integer', 'long', 'float',
  'double', 'decimal', 'date', 'timestamp', 'binary', 'json', 'custom'];
const SHAPES = ['geo', 'object', 'map', 'constant'];
const JOINS = ['belongs_to', 'has_one', 'has_many', 'many_to_many'];
const AGGS = ['count', 'sum', 'avg', 'min', 'max', 'ids'];
const KINDS = [...SCALARS, ...SHAPES, ...JOINS, ...AGGS];

// The keys each kind takes besides its type key and fields (schema format).
function siblings(k) {
  if (SCALARS.includes(k)) {
    return ['column', 'required', 'transforms', 'default', 'options']
      .concat(k === 'enum' ? ['variants'] : [], k === 'custom' ? ['postgres', 'opensearch'] : []);
  }
  switch (k) {
    case 'geo': return ['column', 'lat', 'lon', 'required', 'options'];
    case 'object': return ['options'];
    case 'map': return ['column', 'values', 'required', 'options'];
    case 'constant': return ['value', 'options'];
    case 'belongs_to': return ['table', 'column', 'primary_key', 'required', 'filters', 'options'];
    case 'has_one': return ['table', 'foreign_key', 'primary_key', 'required', 'filters', 'order_by', 'options'];
    case 'has_many': return ['table', 'foreign_key', 'primary_key', 'filters', 'order_by', 'limit', 'options'];
    case 'many_to_many': return ['table', 'through', 'primary_key', 'filters', 'order_by', 'limit', 'options'];
    case 'count': return ['table', 'foreign_key', 'through', 'filters'];
    case 'avg': return ['table', 'foreign_key', 'through', 'column', 'filters'];
    case 'ids': return ['table', 'foreign_key', 'through', 'element_type', 'filters'];
    default: return ['table', 'foreign_key', 'through', 'column', 'value_type', 'filters']; // sum, min, max
  }
}
const ROOT_KEYS = ['table', 'schema', 'primary_key', 'soft_delete', 'filters'];
const HINTS = {
  column: 'source column (default: the field name)', required: 'true: never null', transforms: '[trim, lowercase]',
  default: 'value when NULL', options: '{analyzer: …, fields: …} OpenSearch mapping parameters',
  variants: '[low, medium, high]: sort order', postgres: '[numeric]', opensearch: 'scaled_float',
  lat: 'latitude column', lon: 'longitude column', values: 'keyword, text, long, …', value: 'fixed value',
  table: 'related table', primary_key: 'its primary key', foreign_key: 'its column pointing back here',
  through: '{table: …, left_key: …, right_key: …}', filters: '[{column: status, op: neq, value: cancelled}]',
  order_by: '[{column: placed_at, direction: desc}]', limit: '≥ 1', value_type: 'double, long, timestamp, …',
  element_type: 'long or keyword', schema: 'Postgres schema (public)', soft_delete: '{column: deleted_at}',
};

const S = {
  state: null, tables: new Map(), model: null, yaml: null, name: '', path: '', ev: null,
  open: new Set(), adding: null, tab: 'yaml', docs: null, expanded: new Set(), query: '',
};
const $ = (sel) => document.querySelector(sel);

// h builds an element: h('div', {class: 'x', onclick: fn}, child, 'text', …).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, body) {
  const res = await fetch(path, body === undefined ? {} : {
    method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body),
  });
  const data = await res.json().catch(() => ({error: res.status + ' ' + res.statusText}));
  if (!res.ok) throw new Error(data.error || res.statusText);
  return data;
}

// ---- the model

const kindOf = (f) => Object.keys(f).find((k) => KINDS.includes(k));
const isJoin = (k) => JOINS.includes(k);
const isAgg = (k) => AGGS.includes(k);

function fieldAt(id) {
  let list = S.model.fields, f = null;
  for (const i of id.split('.')) { f = list[+i]; list = f.fields || []; }
  return f;
}
function listOf(id) { // the fields list holding id, and its position
  const parts = id.split('.'), last = +parts.pop();
  return {list: parts.length ? fieldAt(parts.join('.')).fields : S.model.fields, i: last};
}
// tableOf: the table whose columns a node's fields read.
function tableOf(id) {
  if (id === '') return S.model.table;
  const f = fieldAt(id), k = kindOf(f);
  if (isJoin(k)) return f.table;
  const parts = id.split('.'); parts.pop();
  return tableOf(parts.join('.'));
}
function catalogTable(name) {
  return S.tables.get((S.model.schema || 'public') + '.' + name);
}
function withKind(f, kind) { // the same field with another type key, kept first
  const name = f[kindOf(f)], out = {[kind]: name};
  for (const [k, v] of Object.entries(f)) if (!KINDS.includes(k)) out[k] = v;
  return out;
}
function uniqueName(list, name) {
  const taken = new Set(list.map((f) => f[kindOf(f)]));
  let n = name, i = 2;
  while (taken.has(n)) n = name + '_' + i++;
  return n;
}

// A tiny reader for values typed in the inspector: YAML flow style
// ([trim, lowercase], {column: x, op: eq, value: 3}), JSON, or a bare word.
function parseValue(text) {
  const s = text.trim();
  if (s === '') return undefined;
  let i = 0;
  const ws = () => { while (i < s.length && /\s/.test(s[i])) i++; };
  const word = () => {
    ws();
    if (s[i] === '"' || s[i] === "'") {
      const q = s[i++]; let out = '';
      while (i < s.length && s[i] !== q) { if (s[i] === '\\' && q === '"') i++; out += s[i++]; }
      i++; return out;
    }
    const start = i;
    while (i < s.length && !',:]}'.includes(s[i])) i++;
    return scalar(s.slice(start, i).trim());
  };
  const value = () => {
    ws();
    if (s[i] === '[') {
      i++; const out = []; ws();
      if (s[i] === ']') { i++; return out; }
      for (;;) { out.push(value()); ws(); if (s[i] === ',') { i++; continue; } if (s[i] === ']') { i++; return out; } throw new Error('expected , or ]'); }
    }
    if (s[i] === '{') {
      i++; const out = {}; ws();
      if (s[i] === '}') { i++; return out; }
      for (;;) {
        const k = String(word()); ws();
        if (s[i] !== ':') throw new Error('expected : after ' + k);
        i++; out[k] = value(); ws();
        if (s[i] === ',') { i++; continue; } if (s[i] === '}') { i++; return out; } throw new Error('expected , or }');
      }
    }
    return word();
  };
  if (!/^[\[{]/.test(s)) return scalar(s);
  try { const v = value(); ws(); if (i === s.length) return v; } catch (e) { /* keep the text */ }
  return s;
}
function scalar(w) {
  if (w === 'true' || w === 'false') return w === 'true';
  if (w === 'null' || w === '~') return null;
  if (/^-?\d+(\.\d+)?([eE][-+]?\d+)?$/.test(w)) return Number(w);
  if (/^".*"$|^'.*'$/.test(w)) return w.slice(1, -1);
  return w;
}
function showValue(v) {
  if (v === undefined) return '';
  if (Array.isArray(v)) return '[' + v.map(showValue).join(', ') + ']';
  if (v && typeof v === 'object') return '{' + Object.entries(v).map(([k, x]) => k + ': ' + showValue(x)).join(', ') + '}';
  if (typeof v === 'string' && (v === '' || /[,:\[\]{}"']/.test(v) || scalar(v) !== v)) return JSON.stringify(v);
  return String(v);
}

// ---- evaluation: every edit goes through the server's loader and checks

let timer = null, seq = 0;
function source() {
  const base = {name: S.name, schema_path: S.path};
  return S.yaml !== null ? {...base, yaml: S.yaml} : {...base, model: S.model};
}
function edited() { S.yaml = null; render(); schedule(); }
// busy marks the tree while an edit waits for the server's verdict.
function busy(on) { $('#doc').setAttribute('aria-busy', on ? 'true' : 'false'); }
function schedule() { clearTimeout(timer); busy(true); timer = setTimeout(evaluate, 200); }
async function evaluate() {
  if (!S.model && S.yaml === null) { busy(false); return; }
  const mine = ++seq;
  busy(true);
  try {
    const ev = await api('/api/evaluate', source());
    if (mine !== seq) return;
    S.ev = ev;
    if (ev.model) { S.model = ev.model; S.yaml = null; }
    render();
    if (S.tab === 'docs') preview(); // or say why there are none
  } catch (e) { status(e.message, true); } finally { if (mine === seq) busy(false); }
}
async function preview(ev) {
  if (ev) ev.preventDefault();
  if (!S.ev || !S.ev.valid) { S.docs = {error: 'The schema has errors: fix them to build documents.'}; renderDocs(); return; }
  const keys = $('#keys').value.split(/[\s,]+/).filter(Boolean);
  try {
    S.docs = await api('/api/preview', {...source(), keys, sample: +$('#sample').value || 3});
  } catch (e) { S.docs = {error: e.message}; }
  renderDocs();
}
async function save() {
  if (!S.ev || !S.ev.valid) return;
  try {
    const r = await api('/api/save', source());
    await loadState();
    status('saved ' + r.schema_file + (r.config_changed ? ' and ' + r.config : ''), false);
    schedule();
  } catch (e) { status(e.message, true); }
}
function status(text, bad) {
  $('#status').replaceChildren(h('span', {class: bad ? 'bad' : 'ok', text}));
}

// ---- starting points

async function loadState() {
  S.state = await api('/api/state');
  S.tables = new Map(S.state.tables.map((t) => [t.schema + '.' + t.name, t]));
  renderCatalog();
}
async function startFrom(t, depth) {
  try {
    const r = await api('/api/scaffold', {schema: t.schema, table: t.name, depth});
    open(r.model, t.name, 'schemas/' + t.name + '.schema.yml');
  } catch (e) { status(e.message, true); }
}
function open(model, name, path) {
  S.model = model; S.yaml = null; S.name = name; S.path = path; S.open.clear(); S.adding = null; S.docs = null;
  $('#name').value = name; $('#path').value = path;
  edited();
  const first = document.querySelector('#tree .sel');
  if (first) first.focus();
}

// ---- rendering

function render() {
  const active = document.activeElement && document.activeElement.dataset.k;
  renderTree();
  renderSide();
  if (active) { const el = document.querySelector(`[data-k="${CSS.escape(active)}"]`); if (el) el.focus(); }
}

function messagesFor(node) {
  return (S.ev ? S.ev.messages : []).filter((m) => m.node === node);
}
function msgList(node) {
  const ms = messagesFor(node);
  return ms.length ? h('div', {class: 'msgs'}, ms.map((m) => h('div', {class: 'msg ' + m.severity, role: 'alert', text: m.text}))) : null;
}

function renderTree() {
  $('#empty').hidden = !!S.model;
  const tree = $('#tree');
  if (!S.model) { tree.replaceChildren(); return; }
  const m = S.model;
  const details = [m.primary_key && 'primary key ' + m.primary_key,
    m.soft_delete && 'soft delete ' + showValue(m.soft_delete), m.filters && m.filters.length + ' filter(s)'].filter(Boolean);
  const root = h('li', {},
    h('div', {class: 'card root-card' + (messagesFor('').some((x) => x.severity === 'error') ? ' has-error' : '')},
      h('div', {class: 'row'},
        h('button', {class: 'sel', 'data-k': 'sel:', 'aria-expanded': S.open.has('') ? 'true' : 'false',
          onclick: () => toggle(S.open, ''), title: 'Index settings'},
          h('span', {class: 'kind', text: 'index'}), h('span', {class: 'fname', text: (m.schema ? m.schema + '.' : '') + (m.table || '?')}),
          h('span', {class: 'detail', text: details.join(' · ')})),
        h('span', {class: 'tools'}, h('button', {'data-k': 'add:', onclick: () => toggleAdd(''), 'aria-label': 'Add a field to the root'}, '+ add'))),
      msgList(''),
      S.open.has('') ? inspector('', m, ROOT_KEYS) : null,
      S.adding === '' ? adder('') : null),
    fieldList(m.fields || [], ''));
  const problems = (S.ev ? S.ev.messages : []).filter((x) => x.severity === 'error');
  tree.replaceChildren(
    problems.length ? h('div', {class: 'problems'}, h('strong', {text: problems.length + ' problem(s); each is also shown on its element.'})) : '',
    h('ul', {class: 'tree'}, root));
}

function fieldList(fields, prefix) {
  if (!fields.length) return null;
  return h('ul', {}, fields.map((f, i) => fieldItem(f, prefix + i)));
}

function fieldItem(f, id) {
  const k = kindOf(f) || '?';
  const cls = isJoin(k) ? 'join' : isAgg(k) ? 'agg' : k === 'object' ? 'obj' : '';
  const d = [];
  if (isJoin(k) || isAgg(k)) d.push(f.table);
  if (k === 'belongs_to') d.push('via ' + (f.column || f[k]));
  else if (f.foreign_key) d.push('by ' + f.foreign_key);
  if (f.through) d.push('through ' + (f.through.table || '?'));
  if (!isJoin(k) && f.column && f.column !== f[k]) d.push('column ' + f.column);
  if (f.required) d.push('required');
  if (f.order_by) d.push('order ' + showValue(f.order_by));
  if (f.limit) d.push('limit ' + f.limit);
  if (f.filters) d.push(f.filters.length + ' filter(s)');
  const errs = messagesFor(id).some((x) => x.severity === 'error');
  const label = `${k} ${f[k]}`;
  return h('li', {},
    h('div', {class: 'card' + (errs ? ' has-error' : '') + (S.open.has(id) ? ' selected' : ''), 'data-node': id},
      h('div', {class: 'row'},
        h('button', {class: 'sel', 'data-k': 'sel:' + id, 'aria-expanded': S.open.has(id) ? 'true' : 'false',
          onclick: () => toggle(S.open, id), title: 'Edit ' + label},
          h('span', {class: 'kind ' + cls, text: k}), h('span', {class: 'fname', text: f[k]}),
          h('span', {class: 'detail', text: d.filter(Boolean).join(' · ')})),
        h('span', {class: 'tools'},
          (isJoin(k) || k === 'object') ? h('button', {'data-k': 'add:' + id, onclick: () => toggleAdd(id), 'aria-label': 'Add a field to ' + label}, '+ add') : null,
          h('button', {'data-k': 'up:' + id, onclick: () => move(id, -1), 'aria-label': 'Move ' + label + ' up'}, '↑'),
          h('button', {'data-k': 'down:' + id, onclick: () => move(id, 1), 'aria-label': 'Move ' + label + ' down'}, '↓'),
          h('button', {'data-k': 'del:' + id, onclick: () => remove(id), 'aria-label': 'Remove ' + label}, '✕'))),
      msgList(id),
      S.open.has(id) ? inspector(id, f, siblings(k)) : null,
      S.adding === id ? adder(id) : null),
    fieldList(f.fields || [], id + '.'));
}

function toggle(set, id) { set.has(id) ? set.delete(id) : set.add(id); render(); }
function toggleAdd(id) {
  S.adding = S.adding === id ? null : id; render();
  const sel = document.querySelector(`[data-k="adder:${CSS.escape(id)}"]`); if (sel) sel.focus();
}
function move(id, by) {
  const {list, i} = listOf(id), j = i + by;
  if (j < 0 || j >= list.length) return;
  [list[i], list[j]] = [list[j], list[i]];
  const parts = id.split('.'); parts[parts.length - 1] = String(j);
  S.open.clear(); edited();
  const el = document.querySelector(`[data-k="${by < 0 ? 'up' : 'down'}:${CSS.escape(parts.join('.'))}"]`); if (el) el.focus();
}
function remove(id) {
  const {list, i} = listOf(id);
  list.splice(i, 1); S.open.clear(); S.adding = null; edited();
}

// inspector edits every key a node's kind takes, and any other key it has
// (so a misplaced one can be fixed; the loader says what is wrong with it).
function inspector(id, f, keys) {
  const rows = [];
  const k = id === '' ? null : kindOf(f);
  if (k) {
    rows.push(h('label', {for: 'i-name-' + id, text: 'name'}),
      h('input', {id: 'i-name-' + id, 'data-k': 'name:' + id, value: f[k], onchange: (e) => { f[k] = e.target.value.trim(); edited(); }}));
    const family = isJoin(k) ? JOINS : isAgg(k) ? AGGS : [...SCALARS, ...SHAPES];
    const col = !isJoin(k) && !isAgg(k) && catalogTable(tableOf(id.split('.').slice(0, -1).join('.')) || '');
    const cat = col && col.columns.find((c) => c.name === (f.column || f[k]));
    rows.push(h('label', {for: 'i-kind-' + id, text: 'type'}),
      h('select', {id: 'i-kind-' + id, 'data-k': 'kind:' + id, onchange: (e) => {
        const {list, i} = listOf(id); list[i] = withKind(f, e.target.value); edited();
      }}, family.map((x) => h('option', {value: x, selected: x === k}, x + (cat && cat.kind === x ? '  (suggested for ' + cat.type + ')' : '')))));
  }
  const all = keys.concat(Object.keys(f).filter((x) => !keys.includes(x) && x !== k && x !== 'fields' && x !== 'version'));
  for (const key of all) {
    const inputId = `i-${key}-${id}`;
    rows.push(h('label', {for: inputId, text: key}),
      h('input', {id: inputId, 'data-k': key + ':' + id, value: showValue(f[key]), placeholder: HINTS[key] || '', spellcheck: 'false',
        onchange: (e) => { const v = parseValue(e.target.value); if (v === undefined) delete f[key]; else f[key] = v; edited(); }}));
  }
  return h('div', {class: 'inspector'}, rows,
    h('div', {class: 'help', text: 'Values are YAML: a word, a number, true/false, [a, b] or {key: value}. Empty removes the key.'}));
}

// adder offers what a node can hold: the columns of its table not yet
// read, the joins the keys allow, aggregates over them, and shapes.
function adder(id) {
  const tname = tableOf(id), t = catalogTable(tname || '');
  const fields = id === '' ? S.model.fields : fieldAt(id).fields || [];
  const used = new Set(fields.map((f) => f.column || f[kindOf(f)]));
  const opts = [];
  if (t) {
    opts.push(h('optgroup', {label: 'Columns of ' + t.name},
      t.columns.filter((c) => !used.has(c.name)).map((c) => h('option', {value: 'col:' + c.name}, `${c.name} — ${c.type}${c.nullable ? '' : ' not null'} → ${c.kind}`))));
    if (!id.length || isJoin(kindOf(fieldAt(id)))) {
      opts.push(h('optgroup', {label: 'Joins from ' + t.name},
        t.relations.map((r, i) => h('option', {value: 'rel:' + i}, `${r.kind} ${r.name} → ${r.table}${r.through ? ' through ' + r.through.table : ''}`))));
      const aggs = [];
      t.relations.forEach((r, i) => {
        if (r.kind === 'belongs_to') return;
        aggs.push(h('option', {value: `agg:count:${i}`}, `count of ${r.name}`), h('option', {value: `agg:ids:${i}`}, `ids of ${r.name}`));
        const rt = catalogTable(r.table);
        for (const c of rt ? rt.columns : []) {
          if (!['short', 'integer', 'long', 'float', 'double', 'decimal', 'date', 'timestamp'].includes(c.kind)) continue;
          for (const op of ['sum', 'avg', 'min', 'max']) {
            if ((op === 'sum' || op === 'avg') && ['date', 'timestamp'].includes(c.kind)) continue;
            aggs.push(h('option', {value: `agg:${op}:${i}:${c.name}`}, `${op} of ${r.name}.${c.name}`));
          }
        }
      });
      opts.push(h('optgroup', {label: 'Aggregates'}, aggs));
    }
  }
  opts.push(h('optgroup', {label: 'Other'}, ['object', 'constant', 'geo', 'map'].map((k) => h('option', {value: 'new:' + k}, k))));
  const sel = h('select', {'data-k': 'adder:' + id, 'aria-label': 'What to add', onkeydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); add(id, sel.value); } }}, opts);
  return h('div', {class: 'adder'}, sel,
    h('button', {'data-k': 'addgo:' + id, onclick: () => add(id, sel.value)}, 'Add'),
    h('button', {'data-k': 'addclose:' + id, onclick: () => toggleAdd(id)}, 'Close'));
}

function add(id, choice) {
  if (!choice) return;
  const t = catalogTable(tableOf(id) || '');
  const node = id === '' ? S.model : fieldAt(id);
  node.fields = node.fields || [];
  const [what, a, b, c] = choice.split(':');
  let f;
  if (what === 'col') f = structuredClone(t.fields[a]);
  else if (what === 'rel') f = structuredClone(t.relations[+a].field);
  else if (what === 'agg') f = aggregate(a, t.relations[+b], c);
  else f = {[a]: a === 'object' ? 'group' : a === 'constant' ? 'source' : a, ...(a === 'object' ? {fields: []} : a === 'constant' ? {value: 'postgres'} : a === 'geo' ? {lat: 'lat', lon: 'lon'} : a === 'map' ? {values: 'keyword'} : {})};
  const k = kindOf(f);
  f[k] = uniqueName(node.fields, f[k]);
  node.fields.push(f);
  const newId = (id === '' ? '' : id + '.') + (node.fields.length - 1);
  edited();
  const el = document.querySelector(`[data-k="sel:${CSS.escape(newId)}"]`); if (el) el.focus();
}

function aggregate(op, r, col) {
  const rt = catalogTable(r.table);
  const name = op === 'count' ? r.name + '_count' : op === 'ids' ? r.name + '_ids' : `${op}_${r.name}_${col}`;
  const f = {[op]: name, table: r.table};
  if (r.through) f.through = {...r.through}; else f.foreign_key = r.foreign_key;
  if (col) f.column = col;
  const kind = col && rt.columns.find((c) => c.name === col).kind;
  if (op === 'sum') f.value_type = ['short', 'integer', 'long'].includes(kind) ? 'long' : 'double';
  if (op === 'min' || op === 'max') f.value_type = kind;
  if (op === 'ids') {
    const pk = rt.columns.find((c) => c.name === r.primary_key);
    f.element_type = pk && ['short', 'integer', 'long'].includes(pk.kind) ? 'long' : 'keyword';
  }
  return f;
}

function renderSide() {
  const ev = S.ev;
  const st = $('#status');
  $('#save').disabled = !ev || !ev.valid;
  for (const [node, box] of [['@name', '#name-msg'], ['@path', '#path-msg']]) $(box).replaceChildren(msgList(node) || '');
  if (ev) {
    const errors = ev.messages.filter((m) => m.severity === 'error').length;
    const warnings = ev.messages.filter((m) => m.severity === 'warning').length;
    st.replaceChildren(
      h('span', {class: ev.valid ? 'ok' : 'bad', text: ev.valid ? '✓ valid' : `✗ ${errors} error(s)`}),
      warnings ? h('span', {class: 'hash', text: ` · ${warnings} warning(s)`}) : '',
      ev.alias ? h('span', {class: 'hash', text: ' · index ' + ev.alias}) : '');
  }
  const ta = $('#yaml');
  if (document.activeElement !== ta && ev && S.yaml === null) ta.value = ev.yaml;
  $('#mapping').textContent = ev && ev.mapping
    ? JSON.stringify({mappings: ev.mapping, settings: {analysis: ev.analysis}}, null, 2) : 'No mapping while the schema does not load.';
  const ch = $('#changes');
  if (!ev || !ev.diff) { ch.replaceChildren(h('p', {text: 'No comparison while the schema has errors.'})); return; }
  const d = ev.diff;
  ch.replaceChildren(
    h('p', {}, 'Hash ', h('code', {text: ev.hash}), d.saved ? [' (saved: ', h('code', {text: d.saved_hash}), ')'] : ' (not saved yet)'),
    h('p', {class: d.reseed ? 'reseed' : 'keep', text: d.reseed
      ? (d.saved ? 'The hash changes: the next run builds a new index ' + ev.alias + ' from scratch (reseed), and moves the alias when it is complete.' : 'A new index: the first run builds ' + ev.alias + ' from scratch.')
      : 'The hash is the same: the running index is kept, no reseed.'}),
    d.changes.length ? h('ul', {}, d.changes.map((c) => h('li', {text: c}))) : h('p', {text: 'No change from the saved schema.'}));
}

function renderDocs() {
  const box = $('#docs');
  if (!S.docs) { box.replaceChildren(); return; }
  if (S.docs.error) { box.replaceChildren(h('div', {class: 'msg error', role: 'alert', text: S.docs.error})); return; }
  box.replaceChildren(...S.docs.docs.map((d) => h('div', {class: 'doc'},
    h('div', {class: 'docid', text: '_id ' + d.id}),
    d.error ? h('div', {class: 'msg error', text: d.error})
      : d.doc === null ? h('p', {class: 'hint', text: 'No document: no such row, filtered out or soft deleted (a delete in the index).'})
      : h('pre', {'data-id': d.id, text: JSON.stringify(d.doc, null, 2)}))));
}

function renderCatalog() {
  const q = S.query.toLowerCase();
  $('#indexes').replaceChildren(...S.state.indexes.map((ix) => h('li', {},
    h('button', {onclick: () => open(ix.model, ix.name, ix.schema_path), title: 'Open ' + ix.schema_path},
      h('span', {class: 'tname', text: ix.name}), h('span', {class: 'badge', text: ix.hash}), ix.enabled ? '' : h('span', {class: 'badge', text: 'disabled'})))));
  const items = [];
  for (const t of S.state.tables) {
    const key = t.schema + '.' + t.name;
    const cols = q ? t.columns.filter((c) => c.name.includes(q)) : t.columns;
    if (q && !key.includes(q) && !cols.length) continue;
    const expanded = S.expanded.has(key) || (q && !key.includes(q));
    const fkCols = new Set(t.foreign_keys.flatMap((fk) => fk.columns));
    items.push(h('li', {},
      h('button', {'aria-expanded': expanded ? 'true' : 'false', 'data-table': key, onclick: () => toggleTable(key)},
        h('span', {class: 'tname', text: (t.schema === 'public' ? '' : t.schema + '.') + t.name}),
        h('span', {class: 'badge', text: t.columns.length + ' col'}),
        t.junction ? h('span', {class: 'badge junction', text: 'junction'}) : '', t.view ? h('span', {class: 'badge', text: 'view'}) : ''),
      expanded ? h('ul', {class: 'cols'},
        t.junction ? null : h('li', {class: 'start'},
          h('button', {'data-start': key, onclick: () => startFrom(t, 0)}, 'Start index'),
          h('button', {onclick: () => startFrom(t, 1)}, '… with joins')),
        cols.map((c) => h('li', {},
          h('span', {class: 'mono', text: c.name}), h('span', {class: 'type', text: c.type + (c.nullable ? '' : ' not null')}),
          t.primary_key.includes(c.name) ? h('span', {class: 'key', text: 'PK'}) : '',
          fkCols.has(c.name) ? h('span', {class: 'key', text: 'FK → ' + t.foreign_keys.find((fk) => fk.columns.includes(c.name)).ref_table}) : '')),
        t.relations.map((r) => h('li', {class: 'detail', text: `${r.kind} ${r.table}${r.through ? ' (through ' + r.through.table + ')' : ''}`}))) : null));
  }
  $('#tables').replaceChildren(...items);
}
function toggleTable(key) { toggle(S.expanded, key); renderCatalog(); const b = document.querySelector(`[data-table="${CSS.escape(key)}"]`); if (b) b.focus(); }

function selectTab(name) {
  S.tab = name;
  for (const b of document.querySelectorAll('#tabs button')) b.setAttribute('aria-selected', b.dataset.tab === name ? 'true' : 'false');
  for (const p of document.querySelectorAll('[role="tabpanel"]')) p.hidden = p.id !== 'tab-' + name;
  if (name === 'docs') preview();
}

// ---- wiring

$('#search').addEventListener('input', (e) => { S.query = e.target.value; renderCatalog(); });
$('#name').addEventListener('change', (e) => { S.name = e.target.value.trim(); schedule(); });
$('#path').addEventListener('change', (e) => { S.path = e.target.value.trim(); schedule(); });
$('#save').addEventListener('click', save);
$('#preview-form').addEventListener('submit', preview);
for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => selectTab(b.dataset.tab));
$('#tabs').addEventListener('keydown', (e) => { // arrow keys move between tabs
  const tabs = [...document.querySelectorAll('#tabs button')], i = tabs.indexOf(document.activeElement);
  if (i < 0 || !['ArrowLeft', 'ArrowRight'].includes(e.key)) return;
  const next = tabs[(i + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
  next.focus(); selectTab(next.dataset.tab);
});
const ta = $('#yaml');
function applyYAML() { if (ta.value !== (S.ev && S.ev.yaml)) { S.yaml = ta.value; evaluate(); } }
ta.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); applyYAML(); } });
ta.addEventListener('blur', applyYAML);
document.addEventListener('keydown', (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === 's') { e.preventDefault(); save(); }
  if (e.key === '/' && !/INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName)) { e.preventDefault(); $('#search').focus(); }
});
loadState().catch((e) => status(e.message, true));
