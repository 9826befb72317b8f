// Byte helpers shared by the crypto bundle: the encodings happn's crypto speaks (base64, hex,
// utf8 and node's 'binary'), and a Uint8Array that serialises the way a node Buffer does, so a
// login sealed in the browser travels as the same `{type: 'Buffer', data: [...]}` JSON.

/** node's 'binary' (latin1) text of bytes, and back (the low byte of each UTF-16 unit). */
const latin1 = (bytes) => {
  let out = '';
  for (let i = 0; i < bytes.length; i += 4096) out += String.fromCharCode.apply(null, bytes.subarray(i, i + 4096));
  return out;
};

export function binary(text) {
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i) & 255;
  return out;
}

export const toBase64 = (bytes) => btoa(latin1(bytes));

/** Lenient like node's `Buffer.from(s, 'base64')`: url-safe letters too, stops at '=', skips the rest. */
export function fromBase64(text) {
  let clean = text.split('=')[0].replace(/-/g, '+').replace(/_/g, '/').replace(/[^A-Za-z0-9+/]/g, '');
  if (clean.length % 4 === 1) clean = clean.slice(0, -1);
  return binary(atob(clean + '==='.slice((clean.length + 3) % 4)));
}

export const toHex = (bytes) => Array.from(bytes, (b) => (b < 16 ? '0' : '') + b.toString(16)).join('');

/** Like node: reads pairs of hex digits and stops at the first pair that is not one. */
export function fromHex(text) {
  const valid = /^(?:[0-9a-fA-F]{2})*/.exec(text)[0];
  const out = new Uint8Array(valid.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(valid.substr(i * 2, 2), 16);
  return out;
}

export const utf8 = (text) => new TextEncoder().encode(text);
export const fromUtf8 = (bytes) => new TextDecoder().decode(bytes);

export function decode(text, encoding) {
  switch ((encoding || 'utf8').toLowerCase()) {
    case 'base64':
      return fromBase64(text);
    case 'hex':
      return fromHex(text);
    case 'binary':
    case 'latin1':
      return binary(text);
    case 'utf8':
    case 'utf-8':
      return utf8(text);
    default:
      throw new Error('Unknown encoding: ' + encoding);
  }
}

export function encode(bytes, encoding) {
  switch ((encoding || 'utf8').toLowerCase()) {
    case 'base64':
      return toBase64(bytes);
    case 'hex':
      return toHex(bytes);
    case 'binary':
    case 'latin1':
      return latin1(bytes);
    case 'utf8':
    case 'utf-8':
      return fromUtf8(bytes);
    default:
      throw new Error('Unknown encoding: ' + encoding);
  }
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Bytes that behave like the node Buffer the original's crypto returns: `JSON.stringify` gives
 * `{"type":"Buffer","data":[...]}` and `toString(encoding)` decodes (utf8 by default), which is
 * what `JSON.parse(crypto.asymmetricDecrypt(...))` relies on.
 */
export class BufferLike extends Uint8Array {
  toJSON() {
    return { type: 'Buffer', data: Array.from(this) };
  }
  toString(encoding) {
    return encode(this, encoding);
  }
  static of(bytes) {
    const out = new BufferLike(bytes.length);
    out.set(bytes);
    return out;
  }
}

/** Bytes from what a caller may hold: a Buffer's JSON form, bytes, an array, or text (utf8). */
export function asBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return Uint8Array.from(value);
  if (value && value.type === 'Buffer' && Array.isArray(value.data)) return Uint8Array.from(value.data);
  if (typeof value === 'string') return utf8(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  throw new TypeError('expected bytes, a Buffer or a string');
}
