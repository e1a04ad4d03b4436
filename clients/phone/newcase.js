// The new-case screen: up to 3 photos and a short form, saved to IndexedDB as the user
// works, then handed to the outbox.

import { del, get, getAll, put, run } from './db.js';
import { prepareImage, MIN_SIDE } from './images.js';
import { SITES, SYMPTOMS, UNITS, getLang, t } from './i18n.js';
import * as outbox from './outbox.js';
import { $, fill, h, notify, randomId } from './ui.js';

const MAX_PHOTOS = 3;
let photos = []; // {id, blob, width, height, order, issues?: [{code, message, local?}]}
const urls = new Map(); // photo id -> object URL of its preview
let replacing = null; // id of the photo a retake replaces
let busy = false;

const form = () => $('#case-form');

function readFields() {
  const f = form();
  return {
    age: f.elements.age.value.trim(),
    sex: f.elements.sex.value || '',
    site: f.elements.site.value,
    siteOther: f.elements.siteOther.value,
    durationN: f.elements.durationN.value.trim(),
    durationUnit: f.elements.durationUnit.value,
    symptoms: SYMPTOMS.filter((s) => $(`#f-sym-${s}`).checked),
    notes: f.elements.notes.value,
  };
}

function writeFields(fields = {}) {
  const f = form();
  f.elements.age.value = fields.age ?? '';
  for (const radio of f.querySelectorAll('input[name="sex"]')) {
    radio.checked = radio.value === fields.sex;
  }
  f.elements.site.value = fields.site ?? '';
  f.elements.siteOther.value = fields.siteOther ?? '';
  f.elements.durationN.value = fields.durationN ?? '';
  f.elements.durationUnit.value = fields.durationUnit || 'weeks';
  for (const s of SYMPTOMS) $(`#f-sym-${s}`).checked = (fields.symptoms || []).includes(s);
  f.elements.notes.value = fields.notes ?? '';
  showSiteOther();
}

const isEmpty = (fields) =>
  !fields || !(fields.age || fields.sex || fields.site || fields.durationN || fields.notes ||
    (fields.symptoms || []).length);

export async function draftIsEmpty() {
  return isEmpty(await get('kv', 'draft')) && (await getAll('photos')).length === 0;
}

function showSiteOther() {
  $('#site-other-wrap').hidden = form().elements.site.value !== 'other';
}

function savedState(ok) {
  const state = $('#draft-state');
  state.textContent = ok ? t('draft_saved') : t('storage_error');
  state.dataset.saved = ok ? String(Date.now()) : '';
}

async function saveFields() {
  try {
    await put('kv', readFields(), 'draft');
    savedState(true);
  } catch {
    savedState(false);
  }
}

function fillSelects() {
  const site = $('#f-site');
  const siteValue = site.value;
  fill(site,
    h('option', { value: '' }, t('site_choose')),
    SITES.map((key) => h('option', { value: key }, t(`site_${key}`))));
  site.value = siteValue;
  const unit = $('#f-duration-unit');
  const unitValue = unit.value || 'weeks';
  fill(unit, UNITS.map((key) => h('option', { value: key }, t(`unit_${key}`))));
  unit.value = unitValue;
}

function urlFor(photo) {
  if (!urls.has(photo.id)) urls.set(photo.id, URL.createObjectURL(photo.blob));
  return urls.get(photo.id);
}

function forget(id) {
  if (urls.has(id)) URL.revokeObjectURL(urls.get(id));
  urls.delete(id);
}

function issueText(issue) {
  return issue.local ? t('photo_too_small_local') : issue.message || issue.code;
}

function renderPhotos() {
  const list = $('#photo-list');
  fill(list,
    photos.map((photo, i) =>
      h('li', { class: `photo${photo.issues?.length ? ' photo-bad' : ''}`, dataset: { id: photo.id } },
        h('img', {
          src: urlFor(photo), alt: t('photo_n', { n: i + 1 }), width: 112, height: 112,
          dataset: { width: photo.width, height: photo.height },
        }),
        h('div', { class: 'photo-side' },
          h('p', { class: 'photo-name' }, t('photo_n', { n: i + 1 }),
            h('span', { class: 'dim' }, ` ${photo.width}×${photo.height}`)),
          h('div', { class: 'photo-buttons' },
            h('button', { type: 'button', class: 'btn btn-small', onclick: () => retake(photo.id) }, t('retake')),
            h('button', { type: 'button', class: 'btn btn-small btn-quiet', onclick: () => removePhoto(photo.id) }, t('remove')))),
        photo.issues?.length
          ? h('div', { class: 'photo-issues', role: 'note' },
            h('p', { class: 'issue-head' }, photo.issues.some((x) => !x.local) ? t('photo_box_issue') : ''),
            h('ul', {}, photo.issues.map((x) => h('li', { dataset: { code: x.code } }, issueText(x)))))
          : null)));
  const full = photos.length >= MAX_PHOTOS;
  for (const id of ['cam-input', 'gallery-input']) $(`#${id}`).disabled = full || busy;
  $('#photo-actions').classList.toggle('disabled', full);
}

async function addFiles(files, replaceId = null) {
  const picked = Array.from(files || []);
  if (!picked.length) return;
  const old = replaceId ? photos.find((p) => p.id === replaceId) : null;
  const room = old ? 1 : MAX_PHOTOS - photos.length;
  if (picked.length > room) notify(t('photo_max'), 'warn');
  busy = true;
  const status = $('#photo-msg');
  status.textContent = t('photo_preparing');
  try {
    for (const file of picked.slice(0, Math.max(0, room))) {
      let prepared;
      try {
        prepared = await prepareImage(file);
      } catch {
        notify(t('photo_failed'), 'error');
        continue;
      }
      const photo = {
        id: randomId(8),
        blob: prepared.blob,
        width: prepared.width,
        height: prepared.height,
        order: old ? old.order : Date.now() + photos.length,
      };
      if (Math.min(prepared.sourceWidth, prepared.sourceHeight) < MIN_SIDE) {
        photo.issues = [{ code: 'too_small', local: true }];
      }
      try {
        await run('photos', 'readwrite', (s) => {
          if (old) s.photos.delete(old.id);
          s.photos.put(photo);
        });
        savedState(true);
      } catch {
        savedState(false);
      }
      if (old) {
        forget(old.id);
        photos[photos.indexOf(old)] = photo;
      } else {
        photos.push(photo);
      }
      renderPhotos();
    }
  } finally {
    busy = false;
    status.textContent = '';
    renderPhotos();
  }
}

function retake(id) {
  replacing = id;
  $('#retake-input').click();
}

async function removePhoto(id) {
  photos = photos.filter((p) => p.id !== id);
  forget(id);
  renderPhotos();
  try {
    await del('photos', id);
    savedState(true);
  } catch {
    savedState(false);
  }
}

function clearUi() {
  for (const id of [...urls.keys()]) forget(id);
  photos = [];
  writeFields({});
  renderPhotos();
  $('#form-error').textContent = '';
  $('#draft-state').textContent = '';
}

function metadataFrom(fields) {
  const meta = {
    language: getLang(),
    symptoms: fields.symptoms.map((s) => t(`sym_${s}`).toLowerCase()),
  };
  if (fields.age !== '') meta.age_years = Number.parseInt(fields.age, 10);
  if (fields.sex) meta.sex = fields.sex;
  const site = fields.site === 'other' ? fields.siteOther.trim() : fields.site ? t(`site_${fields.site}`) : '';
  if (site) meta.body_site = site.slice(0, 120);
  if (fields.durationN) meta.duration = `${Number.parseInt(fields.durationN, 10)} ${t(`unit_${fields.durationUnit}`)}`;
  if (fields.notes.trim()) meta.notes = fields.notes.trim().slice(0, 2000);
  return meta;
}

function validate(fields) {
  if (!photos.length) return t('err_need_photo');
  if (fields.age !== '') {
    const age = Number(fields.age);
    if (!Number.isInteger(age) || age < 0 || age > 120) return t('err_age');
  }
  if (fields.durationN !== '') {
    const n = Number(fields.durationN);
    if (!Number.isInteger(n) || n < 1 || n > 999) return t('err_duration');
  }
  return '';
}

/** Put an outbox case back into the draft (for editing after the box refused it). */
export async function restoreDraft(item, message = '') {
  const restored = item.photos.map((blob, i) => ({
    id: randomId(8), blob, width: item.sizes?.[i]?.[0] || 0, height: item.sizes?.[i]?.[1] || 0,
    order: Date.now() + i,
  }));
  await run(['outbox', 'kv', 'photos'], 'readwrite', (s) => {
    s.outbox.delete(item.localId);
    s.kv.put(item.fields, 'draft');
    s.photos.clear();
    for (const photo of restored) s.photos.put(photo);
  });
  await loadDraft();
  $('#form-error').textContent = message;
}

/** Start a new draft from an earlier case (retake after the quality gate refused it). */
export async function startRetake(fields, retakePhotos) {
  await run(['kv', 'photos'], 'readwrite', (s) => {
    s.kv.put(fields, 'draft');
    s.photos.clear();
    for (const photo of retakePhotos) s.photos.put(photo);
  });
  await loadDraft();
}

async function submit(event) {
  event.preventDefault();
  if (busy) return;
  const fields = readFields();
  const error = validate(fields);
  $('#form-error').textContent = error;
  if (error) return;
  const item = {
    localId: randomId(),
    createdAt: Date.now(),
    metadata: metadataFrom(fields),
    photos: photos.map((p) => p.blob),
    sizes: photos.map((p) => [p.width, p.height]),
    fields,
    state: 'waiting',
    attempts: 0,
    nextAttemptAt: 0,
  };
  const button = $('#send-btn');
  busy = true;
  button.disabled = true;
  button.textContent = t('sending');
  try {
    // One transaction: the case is in the outbox exactly when the draft is gone.
    await run(['outbox', 'kv', 'photos'], 'readwrite', (s) => {
      s.outbox.put(item);
      s.kv.delete('draft');
      s.photos.clear();
    });
  } catch {
    $('#form-error').textContent = t('storage_error');
    busy = false;
    button.disabled = false;
    button.textContent = t('send');
    return;
  }
  clearUi();
  let result;
  try {
    result = await outbox.send(item.localId);
  } finally {
    busy = false;
    button.disabled = false;
    button.textContent = t('send');
    renderPhotos();
  }
  if (result.outcome === 'sent') {
    notify(t('sent_ok'), 'ok');
    location.hash = `#case=${result.id}`;
  } else if (result.outcome === 'rejected') {
    const stored = await get('outbox', item.localId);
    if (stored) await restoreDraft(stored, t('err_rejected', { msg: result.error.message }));
  } else if (result.outcome !== 'unauthorized') {
    notify(t('saved_offline'), 'warn');
    outbox.flush();
    location.hash = '#cases';
  }
}

async function clearDraft() {
  if (!window.confirm(t('clear_confirm'))) return;
  await run(['kv', 'photos'], 'readwrite', (s) => {
    s.kv.delete('draft');
    s.photos.clear();
  });
  clearUi();
}

export async function loadDraft() {
  const [fields, stored] = await Promise.all([get('kv', 'draft'), getAll('photos')]);
  for (const id of [...urls.keys()]) forget(id);
  photos = stored.sort((a, b) => a.order - b.order);
  writeFields(fields || {});
  renderPhotos();
}

export async function initNewCase() {
  fillSelects();
  const f = form();
  f.addEventListener('input', saveFields);
  f.addEventListener('change', saveFields);
  f.addEventListener('submit', submit);
  f.elements.site.addEventListener('change', showSiteOther);
  $('#clear-draft').addEventListener('click', clearDraft);
  $('#cam-input').addEventListener('change', (e) => {
    addFiles(e.target.files).finally(() => { e.target.value = ''; });
  });
  $('#gallery-input').addEventListener('change', (e) => {
    addFiles(e.target.files).finally(() => { e.target.value = ''; });
  });
  $('#retake-input').addEventListener('change', (e) => {
    const id = replacing;
    replacing = null;
    addFiles(e.target.files, id).finally(() => { e.target.value = ''; });
  });
  await loadDraft();
}

export function renderNewCase() {
  fillSelects();
  renderPhotos();
  if ($('#draft-state').dataset.saved) savedState(true);
}
