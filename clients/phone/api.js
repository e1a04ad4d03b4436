// The box's HTTP API: device token, JSON errors, multipart upload, Server-Sent Events.

const TOKEN = 'sk.token';
const DEVICE = 'sk.device';

export class NetworkError extends Error {}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter, details) {
    super(message || code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
    this.details = details;
  }
}

export class Unauthorized extends ApiError {}

/** Worth trying again later: the box is away, busy or failing for a while. */
export const retryable = (error) =>
  error instanceof NetworkError ||
  (error instanceof ApiError && !(error instanceof Unauthorized) &&
    (error.status >= 500 || error.status === 408 || error.status === 429));

function storage(action) {
  try {
    return action(localStorage);
  } catch {
    return null;
  }
}

export const auth = {
  get token() {
    return storage((s) => s.getItem(TOKEN));
  },
  get device() {
    try {
      return JSON.parse(storage((s) => s.getItem(DEVICE)) || 'null');
    } catch {
      return null;
    }
  },
  save(issued) {
    storage((s) => {
      s.setItem(TOKEN, issued.token);
      s.setItem(DEVICE, JSON.stringify({ id: issued.device_id, name: issued.name }));
    });
  },
  clear() {
    storage((s) => {
      s.removeItem(TOKEN);
      s.removeItem(DEVICE);
    });
  },
};

let unauthorizedHandler = () => {};
export const onUnauthorized = (handler) => {
  unauthorizedHandler = handler;
};

function reachable(ok) {
  window.dispatchEvent(new CustomEvent('sk-reachable', { detail: ok }));
}

async function request(path, options = {}) {
  const { method = 'GET', body, headers = {}, signal, timeout = 30000, authed = true } = options;
  const sent = { ...headers };
  if (authed) {
    const token = auth.token;
    if (!token) throw new Unauthorized(401, 'unauthorized', 'not paired');
    sent.Authorization = `Bearer ${token}`;
  }
  const controller = new AbortController();
  const abort = () => controller.abort();
  if (signal?.aborted) abort();
  signal?.addEventListener('abort', abort, { once: true });
  const timer = timeout ? setTimeout(abort, timeout) : 0;
  let response;
  try {
    response = await fetch(path, {
      method, body, headers: sent, signal: controller.signal, cache: 'no-store', credentials: 'omit',
    });
  } catch (error) {
    if (signal?.aborted) throw error;
    reachable(false);
    throw new NetworkError(error.message);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', abort);
  }
  reachable(true);
  if (!response.ok) {
    let error = {};
    try {
      error = (await response.json()).error || {};
    } catch {
      // not JSON (a proxy page?): keep the status
    }
    const retryAfter = Number.parseInt(response.headers.get('Retry-After') || '', 10) || undefined;
    const Kind = response.status === 401 ? Unauthorized : ApiError;
    const failure = new Kind(
      response.status, error.code || `http_${response.status}`, error.message || response.statusText,
      retryAfter, error.details,
    );
    if (failure instanceof Unauthorized && authed) unauthorizedHandler(failure);
    throw failure;
  }
  return response;
}

const json = async (path, options) => (await request(path, options)).json();

export const pair = (code, deviceName) =>
  json('/api/v1/pair', {
    method: 'POST',
    authed: false,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ code, device_name: deviceName }),
  });

export const info = () => json('/api/v1/info');

/** A few bytes to see whether the box answers, before re-sending megabytes of photos. */
export const ping = () => request('/healthz', { authed: false, timeout: 10000 });

/** Upload a case. localId goes along as Idempotency-Key: a box that honours it can drop
 * the duplicate when an upload arrived but its answer was lost and the phone sends again. */
export function createCase(metadata, photos, localId) {
  const form = new FormData();
  form.append('metadata', JSON.stringify(metadata));
  photos.forEach((blob, i) => form.append('photo', blob, `photo${i + 1}.jpg`));
  // Slow clinic Wi-Fi: allow minutes for the upload itself.
  return json('/api/v1/cases', {
    method: 'POST', body: form, timeout: 300000,
    headers: localId ? { 'Idempotency-Key': localId } : {},
  });
}

export const listCases = (url = '/api/v1/cases?limit=20') => json(url);

export const getCase = (id) => json(`/api/v1/cases/${encodeURIComponent(id)}`);

export async function photoBlob(id, index, signal) {
  const response = await request(`/api/v1/cases/${encodeURIComponent(id)}/photos/${index}`, {
    signal, timeout: 120000,
  });
  return response.blob();
}

/** Read the case's event stream until the box ends it; onEvent(type, data) per event.
 * fetch + ReadableStream, because EventSource cannot send the Authorization header. */
export async function streamEvents(id, onEvent, signal, idleMs = 45000) {
  const idle = new AbortController();
  const stop = () => idle.abort();
  signal?.addEventListener('abort', stop, { once: true });
  let timer = setTimeout(stop, idleMs);
  const response = await request(`/api/v1/cases/${encodeURIComponent(id)}/events`, {
    headers: { Accept: 'text/event-stream' }, signal: idle.signal, timeout: 0,
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  let type = 'message';
  let data = [];
  const line = (text) => {
    if (text === '') {
      if (data.length) {
        try {
          onEvent(type, JSON.parse(data.join('\n')));
        } catch {
          // a malformed event is skipped; the final GET has the truth
        }
      }
      type = 'message';
      data = [];
      return;
    }
    if (text.startsWith(':')) return; // keep-alive comment
    const colon = text.indexOf(':');
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? '' : text.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') type = value;
    else if (field === 'data') data.push(value);
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      clearTimeout(timer);
      timer = setTimeout(stop, idleMs);
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf('\n')) >= 0) {
        line(buffer.slice(0, end).replace(/\r$/, ''));
        buffer = buffer.slice(end + 1);
      }
    }
  } catch (error) {
    if (signal?.aborted) throw error;
    reachable(false);
    throw new NetworkError(error.message);
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener('abort', stop);
  }
}
