// SKINspectoR phone app: start-up, routing (#new, #cases, #case=ID, #pair), pairing,
// the language switch and the demo / connection banners.

import * as api from './api.js';
import { hideCases, initCases, leaveCase, refreshOutbox, renderCase, renderList, showCase, showCases } from './cases.js';
import { openDb } from './db.js';
import { getLang, onLangChange, setLang, t } from './i18n.js';
import { initNewCase, renderNewCase } from './newcase.js';
import * as outbox from './outbox.js';
import { $, notify, randomId } from './ui.js';

const REVOKED = 'sk.revoked';
const INFO = 'sk.info';
const VIEWS = ['pair', 'new', 'cases', 'case'];
let current = null;
let pairing = false;

function remember(key, value) {
  try {
    if (value == null) localStorage.removeItem(key);
    else localStorage.setItem(key, typeof value === 'string' ? value : JSON.stringify(value));
  } catch {
    // private mode
  }
}

function recall(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

function cachedInfo() {
  try {
    return JSON.parse(recall(INFO) || 'null');
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------------- banners

function renderChrome() {
  const info = cachedInfo();
  const demo = $('#demo');
  demo.hidden = !info?.demo;
  if (info?.demo) {
    const server = info.demo_warning || t('demo_translation');
    $('#demo-local').textContent = getLang() === 'id' ? t('demo_translation') : '';
    $('#demo-local').hidden = getLang() !== 'id';
    $('#demo-server').textContent = server;
  }
  const device = api.auth.device;
  $('#device-line').textContent = device ? t('device_line', { name: device.name }) : '';
  $('#bundle-line').textContent = info?.bundle_version ? t('bundle_line', { bundle: info.bundle_version }) : '';
  // The active bundle's intended-use line, from its model card (written in English).
  $('#intended-use').textContent = info?.intended_use ? t('intended_use_line', { text: info.intended_use }) : '';
  $('#tabs').hidden = !api.auth.token;
  for (const link of document.querySelectorAll('#tabs a')) {
    const active = link.getAttribute('href') === `#${current === 'case' ? 'cases' : current}`;
    if (active) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
}

async function refreshInfo() {
  if (!api.auth.token) return;
  try {
    remember(INFO, await api.info());
  } catch {
    // unreachable (banner shown) or unpaired (handled): keep what we knew
  }
  renderChrome();
}

let wasReachable = true;

function reachable(ok) {
  $('#conn').hidden = ok;
  // The box is back: send what waits now rather than at the next backoff step.
  if (ok && !wasReachable) outbox.flush({ now: true });
  wasReachable = ok;
}

// ------------------------------------------------------------------------- pairing

function pairMessage(error) {
  if (error instanceof api.NetworkError) return t('pair_err_network');
  if (error.code === 'pairing_code_invalid') return t('pair_err_invalid');
  if (error.code === 'pairing_code_expired') return t('pair_err_expired');
  if (error.status === 429) return t('pair_err_rate', { s: error.retryAfter || 60 });
  return t('pair_err_other', { msg: error.message });
}

async function pairWith(rawCode, rawName) {
  const code = String(rawCode || '').replace(/[\s-]/g, '');
  const name = String(rawName || '').trim();
  const errorBox = $('#pair-error');
  errorBox.textContent = '';
  if (!/^\d{6,12}$/.test(code)) {
    errorBox.textContent = t('pair_err_format');
    return;
  }
  if (!name) {
    errorBox.textContent = t('pair_err_name');
    return;
  }
  if (pairing) return;
  pairing = true;
  const button = $('#pair-submit');
  button.disabled = true;
  button.textContent = t('pair_busy');
  try {
    const issued = await api.pair(code, name.slice(0, 64));
    api.auth.save(issued);
    remember(REVOKED, null);
    $('#pair-code').value = '';
    $('#pair-notice').hidden = true;
    await refreshInfo();
    outbox.flush({ now: true });
    if (location.hash === '#new') route();
    else location.hash = '#new';
  } catch (error) {
    errorBox.textContent = pairMessage(error);
  } finally {
    pairing = false;
    button.disabled = false;
    button.textContent = t('pair_submit');
  }
}

function unauthorized() {
  if (!api.auth.token) return;
  const name = api.auth.device?.name;
  if (name) $('#pair-name').value = name; // pairing again: same name on the box
  api.auth.clear();
  remember(REVOKED, '1');
  remember(INFO, null);
  if (location.hash === '#pair') route();
  else location.hash = '#pair';
}

// ------------------------------------------------------------------------- routing

function show(name) {
  if (current === 'case' && name !== 'case') leaveCase();
  if (current === 'cases' && name !== 'cases') hideCases();
  current = name;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== name;
  renderChrome();
}

function route() {
  const hash = location.hash;
  if (!api.auth.token || hash === '#pair') {
    show('pair');
    $('#pair-notice').hidden = recall(REVOKED) !== '1';
    return;
  }
  if (hash.startsWith('#case=')) {
    show('case');
    showCase(decodeURIComponent(hash.slice(6)));
  } else if (hash === '#cases') {
    show('cases');
    showCases();
  } else {
    show('new');
  }
  window.scrollTo(0, 0);
}

/** A pairing link (#pair=CODE, from the box's QR code): read it once, drop it from the
 * address bar and history, and pair. */
function takePairingLink() {
  const match = /^#pair=([^&]*)/.exec(location.hash);
  if (!match) return null;
  history.replaceState(null, '', location.pathname + location.search);
  return decodeURIComponent(match[1]);
}

// ------------------------------------------------------------------------- start

async function main() {
  setLang(getLang());
  api.onUnauthorized(unauthorized);
  window.addEventListener('sk-reachable', (e) => reachable(e.detail));
  $('#lang-switch').addEventListener('click', () => setLang(getLang() === 'id' ? 'en' : 'id'));
  onLangChange(() => {
    renderChrome();
    renderNewCase();
    renderList();
    if (current === 'case') renderCase();
    notify('');
  });
  outbox.onOutboxChange((event) => {
    if (event.type === 'sent') notify(t('sent_ok'), 'ok');
  });
  $('#pair-form').addEventListener('submit', (e) => {
    e.preventDefault();
    pairWith($('#pair-code').value, $('#pair-name').value);
  });
  const device = api.auth.device;
  $('#pair-name').value = device?.name || `${t('default_device_name')} ${randomId(2).toUpperCase()}`;
  const code = takePairingLink();
  let storageOk = true;
  try {
    await openDb();
    await initNewCase();
    initCases();
    await refreshOutbox();
  } catch {
    storageOk = false;
    notify(t('storage_error'), 'error');
  }
  window.addEventListener('hashchange', () => {
    const linked = takePairingLink();
    if (linked) {
      show('pair');
      $('#pair-code').value = linked;
      pairWith(linked, $('#pair-name').value);
    } else {
      route();
    }
  });
  route();
  document.documentElement.classList.remove('boot');
  if (code) {
    show('pair');
    $('#pair-code').value = code;
    await pairWith(code, $('#pair-name').value);
  }
  refreshInfo();
  if (storageOk) outbox.start().catch(() => {});
  navigator.storage?.persist?.().catch(() => {});
  document.documentElement.dataset.ready = '1';
}

main();
