// Cases waiting on the phone until the box accepts them: retried with backoff, on the
// 'online' event, when the app comes back to the foreground and at every start.

import * as api from './api.js';
import { del, get, getAll, put, run } from './db.js';

const listeners = new Set();
const inFlight = new Set();
let timer = 0;
let flushing = null;

export const onOutboxChange = (listener) => listeners.add(listener);
const changed = (event) => {
  for (const listener of listeners) listener(event);
};

export const backoffMs = (attempts) =>
  Math.min(60000, 2000 * 2 ** Math.max(0, attempts - 1)) * (0.85 + Math.random() * 0.3);

export async function list() {
  const items = await getAll('outbox');
  return items.sort((a, b) => a.createdAt - b.createdAt);
}

/** Try to send one stored case now. Returns {outcome: 'sent', id} | {outcome: 'waiting'} |
 * {outcome: 'rejected', error} | {outcome: 'unauthorized'} | {outcome: 'gone'}. */
export async function send(localId) {
  if (inFlight.has(localId)) return { outcome: 'waiting' };
  inFlight.add(localId);
  try {
    const item = await get('outbox', localId);
    if (!item) return { outcome: 'gone' };
    item.state = 'sending';
    await put('outbox', item);
    changed({ type: 'changed' });
    try {
      if (item.attempts) await api.ping();
      const created = await api.createCase(item.metadata, item.photos, localId);
      await run(['outbox', 'sent'], 'readwrite', (s) => {
        s.outbox.delete(localId);
        s.sent.put({ id: created.id, localId, fields: item.fields, sentAt: Date.now() });
      });
      changed({ type: 'sent', localId, id: created.id });
      return { outcome: 'sent', id: created.id };
    } catch (error) {
      const still = await get('outbox', localId);
      if (!still) return { outcome: 'gone' }; // deleted meanwhile
      let result;
      if (error instanceof api.Unauthorized) {
        still.state = 'waiting'; // kept until the phone is paired again
        result = { outcome: 'unauthorized' };
      } else if (api.retryable(error)) {
        still.state = 'waiting';
        still.attempts = (still.attempts || 0) + 1;
        const wait = error.retryAfter ? error.retryAfter * 1000 : backoffMs(still.attempts);
        still.nextAttemptAt = Date.now() + wait;
        result = { outcome: 'waiting' };
      } else {
        still.state = 'rejected';
        still.error = { code: error.code || 'error', message: error.message || String(error) };
        result = { outcome: 'rejected', error: still.error };
      }
      await put('outbox', still);
      changed({ type: 'changed' });
      return result;
    }
  } finally {
    inFlight.delete(localId);
  }
}

async function schedule() {
  clearTimeout(timer);
  const pending = (await list()).filter((i) => i.state !== 'rejected');
  if (!pending.length) return;
  const next = Math.min(...pending.map((i) => i.nextAttemptAt || 0));
  timer = setTimeout(flush, Math.max(250, next - Date.now()));
}

async function sendDue(now) {
  if (!api.auth.token) return;
  for (const item of await list()) {
    if (item.state === 'rejected') continue;
    if (!now && (item.nextAttemptAt || 0) > Date.now()) continue;
    const { outcome } = await send(item.localId);
    if (outcome === 'waiting' || outcome === 'unauthorized') break;
  }
}

/** Send every due case, oldest first; stop at the first sign the box is away. */
export function flush({ now = false } = {}) {
  if (flushing) return flushing;
  // .finally runs after the assignment even when sendDue returns at once.
  flushing = sendDue(now).catch(() => {}).finally(() => {
    flushing = null;
    schedule().catch(() => {});
  });
  return flushing;
}

export async function add(item) {
  await put('outbox', item);
  changed({ type: 'changed' });
}

export async function remove(localId) {
  await del('outbox', localId);
  changed({ type: 'changed' });
}

export function start() {
  window.addEventListener('online', () => flush({ now: true }));
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') flush({ now: true });
  });
  return list().then((items) => {
    // A reload during an upload leaves 'sending': it is waiting again.
    const stale = items.filter((i) => i.state === 'sending');
    return Promise.all(stale.map((i) => put('outbox', { ...i, state: 'waiting' })));
  }).then(() => flush({ now: true }));
}
