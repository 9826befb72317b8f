// /browser_crypto.js: `window.Crypto`, the crypto a happn 2.x page needs for key-pair (digest)
// login and `encryptPayloads`, with the method names and outputs of the node client's crypto
// (happn-util-crypto): secp256k1 keys as base64, ECDSA signatures as base64 DER (RFC 6979, low-S),
// ECIES as bitcore-ecies 1.0.3 seals it, and the payload cipher of node's
// `crypto.createCipher('aes-256-ctr', secret)` (key and IV from EVP_BytesToKey with MD5).
// Built on the audited @noble libraries; WebCrypto alone has neither secp256k1 nor MD5.

import * as secp from '@noble/secp256k1';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { md5, sha1 } from '@noble/hashes/legacy.js';
import { ctr, cbc } from '@noble/ciphers/aes.js';
import { BufferLike, asBytes, concat, decode, encode, fromBase64, fromHex, toBase64, toHex, utf8 } from './bytes.js';

/**
 * HMAC-SHA256 (RFC 2104), the only MAC needed (RFC 6979 nonces, the ECIES tag). Written here
 * rather than taken from @noble/hashes/hmac: its streaming, any-hash class is 1.2 KB of the
 * bundle for what is two hashes over padded keys; the byte-compatibility test pins the output.
 */
function hmacSha256(key, msg) {
  const pad = new Uint8Array(64);
  pad.set(key.length > 64 ? sha256(key) : key);
  const inner = sha256(concat(pad.map((b) => b ^ 0x36), msg));
  return sha256(concat(pad.map((b) => b ^ 0x5c), inner));
}

secp.hashes.sha256 = sha256;
secp.hashes.hmacSha256 = hmacSha256;

// the digests pages ask createHashFromString for (node offered every OpenSSL one)
const HASHES = { sha1, sha256, sha512, md5 };
const CURVE_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

/** A private key given as base64 (what createKeyPair makes) or as bytes. */
function privateKeyBytes(key) {
  const bytes = typeof key === 'string' ? fromBase64(key) : asBytes(key);
  if (bytes.length > 32) throw new Error('Invalid private key');
  const out = new Uint8Array(32);
  out.set(bytes, 32 - bytes.length);
  return out;
}

const publicKeyBytes = (key) => (typeof key === 'string' ? fromBase64(key) : asBytes(key));

// --- DER for ECDSA signatures (noble-secp256k1 speaks only the compact form) ---

function derInt(bytes) {
  let i = 0;
  while (i < bytes.length - 1 && bytes[i] === 0) i++;
  let v = bytes.slice(i);
  if (v[0] & 0x80) v = concat(Uint8Array.of(0), v);
  return concat(Uint8Array.of(0x02, v.length), v);
}

function compactToDer(sig) {
  const body = concat(derInt(sig.slice(0, 32)), derInt(sig.slice(32, 64)));
  return concat(Uint8Array.of(0x30, body.length), body);
}

function derToCompact(der) {
  const fail = () => {
    throw new Error('Invalid DER signature');
  };
  if (der.length < 8 || der[0] !== 0x30 || der[1] !== der.length - 2) fail();
  const out = new Uint8Array(64);
  let at = 2;
  for (let part = 0; part < 2; part++) {
    if (der[at] !== 0x02) fail();
    const len = der[at + 1];
    let v = der.slice(at + 2, at + 2 + len);
    if (v.length !== len || len === 0) fail();
    while (v.length > 32 && v[0] === 0) v = v.slice(1);
    if (v.length > 32) fail();
    out.set(v, part * 32 + 32 - v.length);
    at += 2 + len;
  }
  if (at !== der.length) fail();
  return out;
}

// --- EVP_BytesToKey (MD5, one round, no salt), as node's createCipher derives key and IV ---

function bytesToKey(password, keyLen, ivLen) {
  const pass = typeof password === 'string' ? utf8(password) : asBytes(password);
  let material = new Uint8Array(0);
  let block = new Uint8Array(0);
  while (material.length < keyLen + ivLen) {
    block = md5(concat(block, pass));
    material = concat(material, block);
  }
  return { key: material.slice(0, keyLen), iv: material.slice(keyLen, keyLen + ivLen) };
}

function cipherFor(algorithm, password) {
  const m = /^aes-(128|192|256)-(ctr|cbc)$/.exec((algorithm || 'aes-256-ctr').toLowerCase());
  if (!m) throw new Error('Unknown cipher ' + algorithm + ' (the browser crypto has aes-128/192/256-ctr and -cbc)');
  const { key, iv } = bytesToKey(password, Number(m[1]) / 8, 16);
  return m[2] === 'ctr' ? ctr(key, iv) : cbc(key, iv);
}

// --- base58check for WIF ---

const B58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58check(payload) {
  const bytes = concat(payload, sha256(sha256(payload)).slice(0, 4));
  let n = BigInt('0x' + (toHex(bytes) || '0'));
  let out = '';
  while (n > 0n) {
    out = B58[Number(n % 58n)] + out;
    n /= 58n;
  }
  for (let i = 0; i < bytes.length && bytes[i] === 0; i++) out = '1' + out;
  return out;
}

function unbase58check(text) {
  let n = 0n;
  for (const ch of text) {
    const v = B58.indexOf(ch);
    if (v < 0) throw new Error('Non-base58 character');
    n = n * 58n + BigInt(v);
  }
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let zeros = 0;
  while (text[zeros] === '1') zeros++;
  const bytes = concat(new Uint8Array(zeros), n === 0n ? new Uint8Array(0) : fromHex(hex));
  const payload = bytes.slice(0, -4);
  const check = sha256(sha256(payload)).slice(0, 4);
  if (bytes.length < 5 || toHex(check) !== toHex(bytes.slice(-4))) throw new Error('Checksum mismatch');
  return payload;
}

function wifToPrivateKey(wif) {
  const payload = unbase58check(wif);
  if (payload[0] !== 0x80 && payload[0] !== 0xef) throw new Error('Invalid network');
  if (payload.length === 34 && payload[33] === 1) return payload.slice(1, 33);
  if (payload.length === 33) return payload.slice(1);
  throw new Error('Length of buffer must be 33 (uncompressed) or 34 (compressed)');
}

const validScalar = (bytes) => {
  if (bytes.length !== 32) return false;
  const n = BigInt('0x' + toHex(bytes));
  return n > 0n && n < CURVE_N;
};

// --- ECIES as in bitcore-ecies 1.0.3 (sender key in front, AES-256-CBC, HMAC-SHA256 tag) ---

function eciesKeys(privateKey, publicKey) {
  const shared = secp.getSharedSecret(privateKey, publicKey, true).slice(1);
  const kEkM = sha512(shared);
  return { kE: kEkM.slice(0, 32), kM: kEkM.slice(32, 64) };
}

function uuidV4() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export default function Crypto() {
  if (!(this instanceof Crypto)) return new Crypto();
}

Object.assign(Crypto.prototype, {
  createKeyPair() {
    const privateKey = secp.utils.randomSecretKey();
    return { privateKey: toBase64(privateKey), publicKey: toBase64(secp.getPublicKey(privateKey, true)) };
  },

  /** WIF (compressed, mainnet) of `keyPair.privateKey`, base64 or hex. */
  keyPairToWIF(keyPair) {
    const key = keyPair && keyPair.privateKey !== undefined ? keyPair.privateKey : keyPair;
    const bytes = typeof key === 'string' && /^[0-9a-fA-F]{64}$/.test(key) ? fromHex(key) : privateKeyBytes(key);
    if (!validScalar(bytes)) throw new Error('Invalid private key');
    return base58check(concat(Uint8Array.of(0x80), bytes, Uint8Array.of(1)));
  },

  keyPairFromWIF(wif) {
    const privateKey = wifToPrivateKey(wif);
    return { privateKey: toBase64(privateKey), publicKey: toBase64(secp.getPublicKey(privateKey, true)) };
  },

  symmetricEncrypt(data, key, algorithm) {
    return toHex(cipherFor(algorithm, key).encrypt(utf8(String(data))));
  },

  symmetricDecrypt(encrypted, key, algorithm) {
    return encode(cipherFor(algorithm, key).decrypt(fromHex(encrypted)), 'utf8');
  },

  symmetricEncryptObject(obj, key, algorithm) {
    return this.symmetricEncrypt(JSON.stringify(obj), key, algorithm);
  },

  symmetricDecryptObject(encrypted, key, algorithm) {
    return JSON.parse(this.symmetricDecrypt(encrypted, key, algorithm));
  },

  /** Seals `message` (text or bytes) for `publicKey` with our `privateKey`; returns Buffer-like bytes. */
  asymmetricEncrypt(publicKey, privateKey, message) {
    const priv = privateKeyBytes(privateKey);
    const msg = asBytes(message);
    const { kE, kM } = eciesKeys(priv, publicKeyBytes(publicKey));
    const iv = hmacSha256(priv, msg).slice(0, 16);
    const c = concat(iv, cbc(kE, iv).encrypt(msg));
    const d = hmacSha256(kM, c);
    return BufferLike.of(concat(secp.getPublicKey(priv, true), c, d));
  },

  /** Opens a sealed message (bytes or a Buffer's JSON); the sender's key is read from the message. */
  asymmetricDecrypt(publicKey, privateKey, message) {
    const buf = asBytes(message);
    const keyLen = buf[0] === 4 ? 65 : buf[0] === 2 || buf[0] === 3 ? 33 : 0;
    if (!keyLen) throw new Error('Invalid type: ' + buf[0]);
    if (buf.length < keyLen + 16 + 32) throw new Error('Invalid checksum');
    const { kE, kM } = eciesKeys(privateKeyBytes(privateKey), buf.slice(0, keyLen));
    const c = buf.slice(keyLen, buf.length - 32);
    const tag = buf.slice(buf.length - 32);
    const expected = hmacSha256(kM, c);
    let diff = 0;
    for (let i = 0; i < 32; i++) diff |= tag[i] ^ expected[i];
    if (diff) throw new Error('Invalid checksum');
    return BufferLike.of(cbc(kE, c.slice(0, 16)).decrypt(c.slice(16)));
  },

  /** ECDSA over the (already hashed) `hash`, RFC 6979, low-S, DER, base64. */
  sign(hash, privateKey, hashEncoding) {
    const digest = typeof hash === 'string' ? decode(hash, hashEncoding || 'base64') : asBytes(hash);
    const sig = secp.sign(digest, privateKeyBytes(privateKey), { prehash: false, lowS: true });
    return toBase64(compactToDer(sig));
  },

  verify(hash, signature, publicKey, hashEncoding) {
    try {
      const enc = hashEncoding || 'base64';
      const digest = typeof hash === 'string' ? decode(hash, enc) : asBytes(hash);
      const der = typeof signature === 'string' ? decode(signature, enc) : asBytes(signature);
      return secp.verify(derToCompact(der), digest, publicKeyBytes(publicKey), { prehash: false, lowS: false });
    } catch (e) {
      return false;
    }
  },

  /** A secp256k1 point, given as hex (default) or in `encoding`. */
  validatePublicKey(publicKey, encoding) {
    try {
      const bytes = decode(String(publicKey), encoding === 'base64' ? 'base64' : 'hex');
      if (toHex(bytes).length !== String(publicKey).length && encoding !== 'base64') return false;
      secp.Point.fromBytes(bytes);
      return true;
    } catch (e) {
      return false;
    }
  },

  /** A private key as 64 hex digits (default), WIF, or in `encoding`. */
  validatePrivateKey(privateKey, encoding) {
    try {
      const text = String(privateKey);
      if (encoding === 'base64') return validScalar(fromBase64(text));
      if (/^[0-9a-fA-F]{64}$/.test(text)) return validScalar(fromHex(text));
      return validScalar(wifToPrivateKey(text));
    } catch (e) {
      return false;
    }
  },

  createHashFromString(input, outputEncoding, algorithm) {
    const hash = HASHES[(algorithm || 'sha256').toLowerCase()];
    if (!hash) throw new Error('Digest method not supported');
    return encode(hash(typeof input === 'string' ? utf8(input) : asBytes(input)), outputEncoding || 'base64');
  },

  generateNonce(randomValue) {
    return this.createHashFromString(randomValue || uuidV4() + uuidV4());
  },
});
