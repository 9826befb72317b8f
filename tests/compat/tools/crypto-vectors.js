#!/usr/bin/env node
'use strict';
/*
 * Test vectors for happn-rs's payload-encryption and digest-login crypto, produced by the very
 * modules the happn 2.21 client uses (happn-util-crypto 0.2.3 → bitcore-lib 0.14, bitcore-ecies
 * 1.0.3, node's crypto.createCipher). The output is committed as
 * crates/engine/src/security/testdata/crypto-vectors.json and checked by the engine's unit tests.
 *
 *   node tools/crypto-vectors.js > ../../crates/engine/src/security/testdata/crypto-vectors.json
 *
 * Everything here is deterministic (fixed keys; ECIES derives its IV from the message; RFC 6979
 * signatures), so re-running it gives the same file.
 */
const crypto = require('crypto');
const Crypto = require('happn-util-crypto');
const bitcore = require('bitcore-lib');

const c = new Crypto();
const b64 = buf => Buffer.from(buf).toString('base64');

/** a fixed secp256k1 keypair from a label, in the b64 form happn stores and sends */
function keyPair(label) {
  const hex = crypto.createHash('sha256').update('happn-rs test key ' + label).digest('hex');
  const pk = new bitcore.PrivateKey(hex);
  return {
    privateKey: Buffer.from(pk.toString(), 'hex').toString('base64'),
    publicKey: Buffer.from(pk.publicKey.toString(), 'hex').toString('base64'),
  };
}

const client = keyPair('client');
const server = keyPair('server');
const other = keyPair('other');

const messages = [
  '',
  'x',
  'exactly 16 bytes',
  JSON.stringify({ username: '_ADMIN', password: 'happn', info: { _browser: false }, publicKey: client.publicKey }),
  JSON.stringify({ data: { text: 'héllo wörld ✓ \u2028 😀' }, _meta: { type: 'response' }, protocol: '1.1.0' }),
  'y'.repeat(1000),
];

// ECIES both ways: client → server (the login), server → client (the login reply).
const ecies = [];
for (const m of messages) {
  ecies.push({ from: 'client', to: 'server', plaintext: m, ciphertext: b64(c.asymmetricEncrypt(server.publicKey, client.privateKey, m)) });
  ecies.push({ from: 'server', to: 'client', plaintext: m, ciphertext: b64(c.asymmetricEncrypt(client.publicKey, server.privateKey, m)) });
}

// The legacy passphrase cipher (aes-256-ctr, key and iv from EVP_BytesToKey(MD5)).
const passphrases = ['M9o9Y7afm', 'toioYAT9kl', 'a', 'a much longer passphrase, with spaces and ünïcödé'];
const symmetric = [];
for (const p of passphrases) {
  for (const m of messages) {
    symmetric.push({ passphrase: p, plaintext: m, hex: c.symmetricEncrypt(m, p) });
  }
}
// The session-secret frame of trace 24 decrypts to JSON with this client's round trip.
const roundTrip = c.symmetricDecryptObject(c.symmetricEncryptObject({ a: 1 }, 'S3cr3t'), 'S3cr3t');
if (roundTrip.a !== 1) throw new Error('symmetric round trip failed');

// Nonces: base64(sha256(random text)); the random text is fixed here.
// generateNonce(seed) hashes the seed; an empty seed would make it draw random uuids instead.
const nonces = ['', 'abc', 'f47ac10b-58cc-4372-a567-0e02b2c3d479' + '9c858901-8a57-4791-81fe-4c455b099bc9']
  .map(seed => ({ seed, nonce: seed ? c.generateNonce(seed) : c.createHashFromString(seed) }));

// Digests: the client's signature over the 32 decoded nonce bytes.
const N = bitcore.crypto.Point.getN();
function highS(digestB64) {
  const sig = bitcore.crypto.Signature.fromBuffer(Buffer.from(digestB64, 'base64'));
  const flipped = new bitcore.crypto.Signature({ r: sig.r, s: N.sub(sig.s) });
  return b64(flipped.toBuffer());
}
const signatures = [];
for (const n of nonces) {
  const digest = c.sign(n.nonce, client.privateKey);
  if (!c.verify(n.nonce, digest, client.publicKey)) throw new Error('own signature does not verify');
  const high = highS(digest);
  signatures.push({ nonce: n.nonce, publicKey: client.publicKey, digest, valid: true, note: 'client signature (low S)' });
  signatures.push({ nonce: n.nonce, publicKey: client.publicKey, digest: high, valid: c.verify(n.nonce, high, client.publicKey), note: 'same signature with S flipped to n-S (bitcore accepts it)' });
  signatures.push({ nonce: n.nonce, publicKey: other.publicKey, digest, valid: c.verify(n.nonce, digest, other.publicKey), note: 'right signature, wrong public key' });
  const otherDigest = c.sign(n.nonce, other.privateKey);
  signatures.push({ nonce: n.nonce, publicKey: client.publicKey, digest: otherDigest, valid: c.verify(n.nonce, otherDigest, client.publicKey), note: 'signed by another key' });
}

process.stdout.write(JSON.stringify({
  generator: 'tests/compat/tools/crypto-vectors.js (happn-util-crypto 0.2.3, bitcore-ecies 1.0.3, node ' + process.version + ')',
  keys: { client, server, other },
  ecies,
  symmetric,
  nonces,
  signatures,
}, null, 1) + '\n');
