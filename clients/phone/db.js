// IndexedDB: the draft (fields + photos as Blobs), the outbox and what was sent.
//   kv      draft fields under the key 'draft'
//   photos  draft photos {id, blob, width, height, order, issues?}
//   outbox  cases not yet accepted by the box {localId, metadata, photos: [Blob], ...}
//   sent    {id (server case id), localId, fields, sentAt}

let opening = null;

export function openDb() {
  if (!opening) {
    opening = new Promise((resolve, reject) => {
      const request = indexedDB.open('skinspector', 1);
      request.onupgradeneeded = () => {
        const db = request.result;
        db.createObjectStore('kv');
        db.createObjectStore('photos', { keyPath: 'id' });
        db.createObjectStore('outbox', { keyPath: 'localId' });
        db.createObjectStore('sent', { keyPath: 'id' });
      };
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
      request.onblocked = () => reject(new Error('database blocked'));
    });
    opening.catch(() => {
      opening = null;
    });
  }
  return opening;
}

/** Run fn(stores) in one transaction; resolves with the result of the request fn
 * returns (if any) once the transaction has committed. */
export async function run(names, mode, fn) {
  const db = await openDb();
  const list = [].concat(names);
  return new Promise((resolve, reject) => {
    const tx = db.transaction(list, mode);
    const stores = Object.fromEntries(list.map((name) => [name, tx.objectStore(name)]));
    let result;
    const request = fn(stores);
    if (request instanceof IDBRequest) {
      request.onsuccess = () => {
        result = request.result;
      };
    }
    tx.oncomplete = () => resolve(result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
  });
}

export const get = (store, key) => run(store, 'readonly', (s) => s[store].get(key));
export const getAll = (store) => run(store, 'readonly', (s) => s[store].getAll());
export const put = (store, value, key) =>
  run(store, 'readwrite', (s) => (key === undefined ? s[store].put(value) : s[store].put(value, key)));
export const del = (store, key) => run(store, 'readwrite', (s) => s[store].delete(key));
