// The case list (cases on the box + cases still on the phone) and one case's result,
// streamed live while the box writes it.

import * as api from './api.js';
import { get } from './db.js';
import { STRINGS, SITES, SYMPTOMS, UNITS, formatTime, t } from './i18n.js';
import { draftIsEmpty, restoreDraft, startRetake } from './newcase.js';
import * as outbox from './outbox.js';
import { $, fill, h, randomId, sleep } from './ui.js';

const FINAL = new Set(['done', 'rejected', 'failed']);
const ACTIONS = { 'urgent referral': 'urgent', 'routine referral': 'routine', 'self-care': 'selfcare' };

/** The case's sync state toward the dermatologist: 'queued' | 'sent' | 'reviewed' | null
 * (the box sends {state, sent_at, ...}; a bare string is accepted too). */
const syncState = (c) => (typeof c.sync === 'string' ? c.sync : c.sync?.state) || null;

/** What a person should read as the case's state. */
export function statusKey(c) {
  if (c.review || syncState(c) === 'reviewed') return 'reviewed';
  if (syncState(c) === 'sent') return 'sent';
  return c.status;
}

const chip = (key, extra = {}) => h('span', { class: `chip chip-${key}`, ...extra }, t(`st_${key}`));

function actionChip(action) {
  const key = ACTIONS[action];
  return key ? h('span', { class: `chip action-${key}` }, t(`action_${key}`)) : null;
}

function summary(ctx = {}) {
  const parts = [];
  if (ctx.body_site) parts.push(ctx.body_site);
  if (ctx.age_years != null) parts.push(t('age_short', { n: ctx.age_years }));
  if (ctx.sex && ctx.sex !== 'unknown') parts.push(t(`sex_${ctx.sex}`));
  return parts.join(' · ') || t('no_details');
}

const errorText = (error) =>
  error instanceof api.NetworkError ? t('conn_offline') : t('list_error', { msg: error.message });

// ------------------------------------------------------------------------- case list

const list = { cases: null, next: null, error: null, outbox: [], active: false, timer: 0 };

function outboxRow(item) {
  const key = item.state === 'rejected' ? 'not_accepted' : item.state === 'sending' ? 'sending' : 'waiting_send';
  const sendNow = async () => {
    await outbox.send(item.localId);
    outbox.flush();
  };
  const remove = async () => {
    if (window.confirm(t('delete_confirm'))) await outbox.remove(item.localId);
  };
  const edit = async () => {
    if (!(await draftIsEmpty()) && !window.confirm(t('replace_draft_confirm'))) return;
    await restoreDraft(item, t('err_rejected', { msg: item.error?.message || '' }));
    location.hash = '#new';
  };
  return h('li', { class: 'case-row outbox-row', dataset: { state: item.state, localId: item.localId } },
    h('div', { class: 'row-top' }, h('span', { class: `chip chip-${key}` }, t(`st_${key}`)),
      h('span', { class: 'dim' }, formatTime(item.createdAt))),
    h('p', { class: 'row-main' }, summary(item.metadata)),
    h('p', { class: 'dim' }, t('photos_count', { n: item.photos.length }),
      item.attempts ? ` · ${t('attempts', { n: item.attempts })}` : ''),
    item.error ? h('p', { class: 'error' }, item.error.message) : null,
    h('div', { class: 'row-buttons' },
      item.state === 'rejected'
        ? h('button', { type: 'button', class: 'btn btn-small', onclick: edit }, t('edit'))
        : h('button', { type: 'button', class: 'btn btn-small', onclick: sendNow, disabled: item.state === 'sending' }, t('send_now')),
      h('button', { type: 'button', class: 'btn btn-small btn-quiet', onclick: remove }, t('delete'))));
}

function caseRow(c) {
  const key = statusKey(c);
  return h('li', { class: 'case-row', dataset: { status: key, id: c.id } },
    h('a', { href: `#case=${c.id}`, class: 'case-link' },
      h('span', { class: 'row-top' }, chip(key),
        c.status === 'done' ? actionChip(c.result?.assessment?.action) : null,
        h('span', { class: 'dim' }, formatTime(c.created_at))),
      h('span', { class: 'row-main' }, summary(c.context)),
      c.review ? h('span', { class: 'row-review' }, reviewLine(c.review)) : null));
}

/** A review as the box stores it ({reviewer, diagnosis, management, urgency, message,
 * reviewed_at}); 'action' and 'comments' are accepted for urgency and message. */
function reviewFields(review) {
  const r = review && typeof review === 'object' ? review : { message: String(review) };
  const action = r.action ?? r.urgency;
  return {
    reviewer: r.reviewer,
    diagnosis: r.diagnosis,
    action: ACTIONS[action] ? t(`action_${ACTIONS[action]}`) : action,
    management: r.management,
    comments: r.comments ?? r.message,
    reviewedAt: r.reviewed_at,
  };
}

function reviewLine(review) {
  const r = reviewFields(review);
  const text = [r.diagnosis, r.comments].filter(Boolean).join(' – ');
  return `${t('review_title')}: ${text || t('st_reviewed')}`;
}

export function renderList() {
  const box = $('#outbox-box');
  box.hidden = !list.outbox.length;
  fill($('#outbox-list'), list.outbox.map(outboxRow));
  const status = $('#cases-status');
  // The box being away is already said by the banner at the top.
  status.textContent = list.error
    ? (list.error instanceof api.NetworkError ? '' : errorText(list.error))
    : list.cases === null ? t('loading') : '';
  const cases = list.cases || [];
  fill($('#case-list'),
    cases.map(caseRow),
    list.cases && !cases.length ? h('li', { class: 'empty' }, t('no_cases')) : null);
  $('#load-more').hidden = !list.next;
  const badge = $('#outbox-badge');
  badge.hidden = !list.outbox.length;
  badge.textContent = String(list.outbox.length);
}

export async function refreshOutbox() {
  try {
    list.outbox = await outbox.list();
  } catch {
    list.outbox = [];
  }
  renderList();
}

export async function refreshList() {
  await refreshOutbox();
  try {
    const body = await api.listCases();
    list.cases = body.cases;
    list.next = body.next || null;
    list.error = null;
  } catch (error) {
    if (!(error instanceof api.Unauthorized)) list.error = error;
  }
  renderList();
}

async function loadMore() {
  if (!list.next) return;
  try {
    const body = await api.listCases(list.next);
    list.cases = [...(list.cases || []), ...body.cases];
    list.next = body.next || null;
  } catch (error) {
    if (!(error instanceof api.Unauthorized)) list.error = error;
  }
  renderList();
}

function poll() {
  clearTimeout(list.timer);
  if (!list.active) return;
  list.timer = setTimeout(async () => {
    if (document.visibilityState === 'visible') await refreshList();
    poll();
  }, 15000);
}

export function showCases() {
  list.active = true;
  renderList();
  refreshList();
  poll();
}

export function hideCases() {
  list.active = false;
  clearTimeout(list.timer);
}

export function initCases() {
  $('#refresh').addEventListener('click', refreshList);
  $('#load-more').addEventListener('click', loadMore);
  outbox.onOutboxChange((event) => {
    if (event.type === 'sent' && list.active) refreshList();
    else refreshOutbox();
  });
}

// ------------------------------------------------------------------------- one case

let view = null;

export function leaveCase() {
  if (!view) return;
  view.abort.abort();
  for (const photo of view.photos.values()) if (photo) URL.revokeObjectURL(photo.url);
  view = null;
}

export function showCase(id) {
  leaveCase();
  view = {
    id, case: null, status: null, phase: null, findings: '', report: '', error: null,
    reconnecting: false, abort: new AbortController(), photos: new Map(), nodes: {},
  };
  renderCase();
  load(view);
}

async function load(v) {
  let delay = 1000;
  while (!v.abort.signal.aborted) {
    try {
      v.case = await api.getCase(v.id);
      v.status = v.case.status;
      v.error = null;
      break;
    } catch (error) {
      if (v.abort.signal.aborted || error instanceof api.Unauthorized) return;
      v.error = error;
      renderCase();
      if (error.status === 404) return;
      await sleep(delay, v.abort.signal);
      delay = Math.min(delay * 2, 15000);
    }
  }
  if (v !== view) return;
  renderCase();
  if (!FINAL.has(v.status)) follow(v);
}

async function follow(v) {
  let delay = 1000;
  const { signal } = v.abort;
  while (!signal.aborted) {
    try {
      await api.streamEvents(v.id, (type, data) => onEvent(v, type, data), signal);
      const latest = await api.getCase(v.id);
      if (signal.aborted) return;
      v.case = latest;
      v.status = latest.status;
      v.reconnecting = false;
      if (FINAL.has(latest.status)) {
        renderCase();
        return;
      }
    } catch (error) {
      if (signal.aborted || error instanceof api.Unauthorized) return;
      v.reconnecting = true;
      renderProgress(v);
    }
    await sleep(delay, signal);
    delay = Math.min(delay * 2, 15000);
  }
}

function onEvent(v, type, data) {
  if (v !== view) return;
  if (type === 'status') {
    v.status = data.status;
    v.reconnecting = false;
    renderProgress(v);
  } else if (type === 'phase') {
    v.phase = data.phase;
    renderProgress(v);
  } else if (type === 'token' && typeof data.text === 'string') {
    const key = data.pass === 'findings' ? 'findings' : 'report';
    v[key] += data.text;
    const node = v.nodes[key];
    if (node) {
      node.appendData(data.text);
      node.parentElement.closest('section').hidden = false;
    }
  }
}

function renderProgress(v) {
  const box = $('#progress');
  if (!box || v !== view) return;
  const chipBox = $('#case-status');
  if (chipBox) chipBox.replaceWith(statusChip(v));
  const phases = ['findings', 'retrieval', 'report'];
  const at = phases.indexOf(v.phase);
  fill(box,
    v.reconnecting ? h('p', { class: 'warn-line', role: 'status' }, t('reconnecting')) : null,
    v.status === 'queued' || !v.status ? h('p', { role: 'status' }, t('waiting_queue')) : null,
    h('ol', { class: 'phases', 'aria-label': t('phases_aria') },
      phases.map((p, i) => h('li', {
        class: i < at ? 'phase-done' : i === at ? 'phase-now' : '',
        'aria-current': i === at ? 'step' : null, dataset: { phase: p },
      }, t(`phase_${p}`)))));
}

function statusChip(v) {
  const settled = v.case && FINAL.has(v.status) && FINAL.has(v.case.status);
  const key = settled ? statusKey(v.case) : v.status || 'queued';
  return chip(key, { id: 'case-status', dataset: { status: key } });
}

function disclaimerBox(text) {
  return h('p', { id: 'disclaimer', class: 'disclaimer', role: 'note' }, text || t('footer_disclaimer'));
}

function liveSection(v, key) {
  const node = document.createTextNode(v[key]);
  v.nodes[key] = node;
  return h('section', { class: 'card live', hidden: !v[key] },
    h('h3', {}, t(`live_${key}`)),
    h('p', { class: 'live-text', id: `live-${key}`, 'aria-busy': 'true' }, node));
}

function photoFigure(v, photo, issues) {
  const loaded = v.photos.get(photo.index);
  return h('li', { class: `photo${issues.length ? ' photo-bad' : ''}`, dataset: { index: photo.index } },
    loaded === null
      ? h('p', { class: 'photo-missing dim' }, t('photo_unavailable'))
      : h('img', { src: loaded?.url, alt: t('photo_n', { n: photo.index + 1 }), width: 112, height: 112 }),
    h('div', { class: 'photo-side' },
      h('p', { class: 'photo-name' }, t('photo_n', { n: photo.index + 1 }))),
    issues.length
      ? h('div', { class: 'photo-issues', role: 'note' },
        h('p', { class: 'issue-head' }, t('photo_box_issue')),
        h('ul', {}, issues.map((q) => h('li', { dataset: { code: q.code } }, q.message || q.code))))
      : null);
}

async function loadPhotos(v) {
  for (const photo of v.case?.photos || []) {
    if (v.photos.has(photo.index) || v.abort.signal.aborted) continue;
    try {
      const blob = await api.photoBlob(v.id, photo.index, v.abort.signal);
      if (v.abort.signal.aborted) return;
      v.photos.set(photo.index, { blob, url: URL.createObjectURL(blob) });
    } catch (error) {
      if (v.abort.signal.aborted) return;
      if (error instanceof api.ApiError && error.status === 403) v.photos.set(photo.index, null);
      else continue;
    }
    const slot = $(`#case-photos li[data-index="${photo.index}"]`);
    if (slot && v === view) {
      const quality = (v.case.result?.quality || []).filter((q) => q.photo === photo.index);
      slot.replaceWith(photoFigure(v, photo, quality));
    }
  }
}

function photosSection(v) {
  const quality = v.case.result?.quality || [];
  return h('section', { class: 'card' }, h('h3', {}, t('photos')),
    h('ul', { class: 'photo-list', id: 'case-photos' },
      v.case.photos.map((p) => photoFigure(v, p, quality.filter((q) => q.photo === p.index)))));
}

function field(label, value) {
  if (value == null || value === '' || (Array.isArray(value) && !value.length)) return null;
  return [h('dt', {}, label), h('dd', {}, Array.isArray(value) ? value.join(', ') : String(value))];
}

function reviewSection(review) {
  const r = reviewFields(review);
  return h('section', { id: 'review', class: 'card review' },
    h('h3', {}, t('review_title')),
    h('dl', {},
      field(t('review_by'), r.reviewer),
      field(t('review_diagnosis'), r.diagnosis),
      field(t('review_action'), r.action),
      field(t('review_management'), r.management),
      field(t('review_comments'), r.comments),
      field(t('review_at'), r.reviewedAt != null ? formatTime(r.reviewedAt) : null)));
}

function syncNote(c) {
  const sentAt = typeof c.sync === 'object' ? c.sync?.sent_at : null;
  return h('p', { class: 'card sync-note', id: 'sync-note' }, t('sync_sent_note'),
    sentAt ? h('span', { class: 'dim' }, ` (${formatTime(sentAt)})`) : null);
}

function referencesSection(refs) {
  const sorted = [...refs].sort((a, b) => Number(b.cited) - Number(a.cited) || a.number - b.number);
  return h('section', { class: 'card', id: 'references' }, h('h3', {}, t('references')),
    sorted.length
      ? h('ul', { class: 'refs' }, sorted.map((r) => h('li', {},
        h('details', { dataset: { number: r.number, cited: r.cited ? '1' : '0' } },
          h('summary', {}, `[${r.number}] ${r.heading || r.title || r.source || ''} `,
            r.cited ? h('span', { class: 'chip chip-cited' }, t('ref_cited')) : null),
          h('p', { class: 'ref-text' }, r.text || ''),
          h('dl', { class: 'meta' },
            field(t('ref_source'), r.source),
            field(t('ref_section'), r.heading && r.title && !r.heading.includes(r.title) ? r.title : null),
            field(t('ref_page'), r.page))))))
      : h('p', { class: 'dim' }, t('no_refs')));
}

function contextSection(c) {
  const ctx = c.context || {};
  return h('details', { class: 'card' }, h('summary', {}, t('context')),
    h('dl', {},
      field(t('created'), formatTime(c.created_at)),
      field(t('ctx_age'), ctx.age_years),
      field(t('ctx_sex'), ctx.sex ? t(`sex_${ctx.sex}`) : null),
      field(t('ctx_site'), ctx.body_site),
      field(t('ctx_duration'), ctx.duration),
      field(t('ctx_symptoms'), ctx.symptoms),
      field(t('ctx_notes'), ctx.notes)));
}

function techSection(result) {
  const audit = result.audit || {};
  return h('details', { class: 'card' }, h('summary', {}, t('tech')),
    h('dl', {},
      field('bundle', audit.bundle_version),
      field('model', audit.model_id),
      field('prompt', audit.prompt_version),
      field('total_s', audit.timings?.total_s?.toFixed?.(1))));
}

function doneSections(v) {
  const result = v.case.result || {};
  const a = result.assessment || {};
  const key = ACTIONS[a.action] || 'routine';
  const flags = a.red_flags || [];
  return [
    // A dermatologist's review outranks the model: it comes first.
    v.case.review ? reviewSection(v.case.review) : null,
    h('section', {
      id: 'action-banner', class: `banner banner-${key}`, dataset: { action: key },
      role: key === 'urgent' ? 'alert' : null,
    },
    h('p', { class: 'banner-title' }, t(`action_${key}`)),
    h('p', {}, t(`action_${key}_help`)),
    a.action_from_model === false && !(result.red_flag_rules || []).length
      ? h('p', { class: 'small' }, t('action_default_note')) : null,
    flags.length
      ? h('div', { id: 'red-flags' }, h('p', { class: 'flags-title' }, t('red_flags')),
        h('ul', {}, flags.map((f) => h('li', {}, f))))
      : null),
    syncState(v.case) === 'sent' && !v.case.review ? syncNote(v.case) : null,
    disclaimerBox(a.disclaimer || result.disclaimer),
    a.likely_conditions?.length
      ? h('section', { class: 'card' }, h('h3', {}, t('likely')),
        h('ul', {}, a.likely_conditions.map((c) =>
          h('li', {}, c.name, c.likelihood ? h('span', { class: 'dim' }, ` (${c.likelihood})`) : null))))
      : null,
    h('section', { class: 'card' }, h('h3', {}, t('findings')),
      a.findings?.length ? h('ul', {}, a.findings.map((f) => h('li', {}, f)))
        : h('p', { class: 'prose' }, result.findings || '—')),
    a.complete === false ? h('p', { class: 'dim small' }, t('incomplete')) : null,
    photosSection(v),
    referencesSection(result.references || []),
    h('details', { class: 'card' }, h('summary', {}, t('raw_text')), h('p', { class: 'prose' }, a.raw_text || '')),
    contextSection(v.case),
    techSection(result),
  ];
}

function rejectedSections(v) {
  const result = v.case.result || {};
  return [
    h('section', { id: 'rejected-banner', class: 'banner banner-routine', role: 'alert' },
      h('p', { class: 'banner-title' }, t('rejected_title')), h('p', {}, t('rejected_help'))),
    disclaimerBox(result.disclaimer),
    photosSection(v),
    h('button', { type: 'button', id: 'retake-case', class: 'btn btn-primary btn-block', onclick: () => retakeCase(v) }, t('retake_case')),
    v.case.review ? reviewSection(v.case.review) : null,
    contextSection(v.case),
  ];
}

function failedSections(v) {
  return [
    h('section', { class: 'banner banner-failed', role: 'alert' },
      h('p', { class: 'banner-title' }, t('failed_title')),
      h('p', {}, t('failed_help')),
      v.case.error ? h('p', { class: 'small', lang: 'en' }, v.case.error) : null),
    disclaimerBox(),
    photosSection(v),
    contextSection(v.case),
  ];
}

export function renderCase() {
  const root = $('#case-body');
  const v = view;
  if (!v) return;
  const head = h('div', { class: 'case-head' },
    h('a', { href: '#cases', class: 'btn btn-quiet btn-small' }, t('back_to_list')),
    v.case || v.status ? statusChip(v) : null);
  if (v.error && !v.case) {
    fill(root, head, h('p', { class: 'error', role: 'alert' },
      v.error.status === 404 ? t('not_found') : t('load_error', { msg: v.error instanceof api.NetworkError ? t('conn_offline') : v.error.message })));
    return;
  }
  if (!v.case) {
    fill(root, head, h('p', { role: 'status' }, t('loading')));
    return;
  }
  let body;
  if (v.status === 'done' && FINAL.has(v.case.status)) body = doneSections(v);
  else if (v.status === 'rejected' && FINAL.has(v.case.status)) body = rejectedSections(v);
  else if (v.status === 'failed' && FINAL.has(v.case.status)) body = failedSections(v);
  else {
    body = [
      h('div', { id: 'progress', class: 'card progress' }),
      disclaimerBox(),
      liveSection(v, 'findings'),
      liveSection(v, 'report'),
    ];
  }
  fill(root, head, body);
  if (!FINAL.has(v.case.status) || !FINAL.has(v.status)) renderProgress(v);
  loadPhotos(v);
}

// ------------------------------------------------------------------------- retake

function keyForLabel(prefix, keys, text) {
  const wanted = String(text || '').trim().toLowerCase();
  return keys.find((k) =>
    Object.values(STRINGS).some((table) => table[`${prefix}_${k}`]?.toLowerCase() === wanted));
}

/** Draft fields from a case's context (when the phone has no record of what was typed). */
function fieldsFromContext(ctx = {}) {
  const site = ctx.body_site ? keyForLabel('site', SITES, ctx.body_site) : '';
  const duration = /^(\d+)\s+(.+)$/.exec(ctx.duration || '');
  const unit = duration ? keyForLabel('unit', UNITS, duration[2]) : null;
  return {
    age: ctx.age_years != null ? String(ctx.age_years) : '',
    sex: ctx.sex || '',
    site: site || (ctx.body_site ? 'other' : ''),
    siteOther: site ? '' : ctx.body_site || '',
    durationN: unit ? duration[1] : '',
    durationUnit: unit || 'weeks',
    symptoms: (ctx.symptoms || []).map((s) => keyForLabel('sym', SYMPTOMS, s)).filter(Boolean),
    notes: [ctx.notes, unit || !ctx.duration ? '' : ctx.duration].filter(Boolean).join('\n'),
  };
}

async function retakeCase(v) {
  if (!(await draftIsEmpty()) && !window.confirm(t('replace_draft_confirm'))) return;
  const sent = await get('sent', v.id).catch(() => null);
  const fields = sent?.fields || fieldsFromContext(v.case.context);
  const quality = v.case.result?.quality || [];
  const photos = [];
  for (const p of v.case.photos) {
    let blob = v.photos.get(p.index)?.blob;
    try {
      if (!blob) blob = await api.photoBlob(v.id, p.index);
    } catch {
      continue; // not this phone's photo: the worker takes a new one
    }
    photos.push({
      id: randomId(8), blob, width: p.width, height: p.height, order: Date.now() + p.index,
      issues: quality.filter((q) => q.photo === p.index).map((q) => ({ code: q.code, message: q.message })),
    });
  }
  await startRetake(fields, photos);
  location.hash = '#new';
}
