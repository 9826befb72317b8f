'use strict';
// Byte-compatibility of /browser_crypto.js with the node client's crypto (happn-util-crypto, as
// installed by tests/compat): the same inputs give the same signatures, ECIES bytes, AES
// ciphertexts, hashes and WIF keys, and each side opens what the other sealed. Checked twice: the
// committed bundle in a node vm, and the bundle served by happn-rs inside Chromium.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const vm = require('vm');
const { ROOT, startServer, openBrowser, inPage } = require('./helpers');

const COMPAT_MODULES = path.join(ROOT, 'tests/compat/node_modules');
const BUNDLE = path.join(ROOT, 'clients/browser/dist/browser_crypto.js');

function original() {
  const Crypto = require(require.resolve('happn-util-crypto', { paths: [COMPAT_MODULES] }));
  return new Crypto();
}

function bundled() {
  const window = {};
  const context = vm.createContext({ window, crypto: globalThis.crypto, TextEncoder, TextDecoder, btoa, atob, Uint8Array });
  vm.runInContext(fs.readFileSync(BUNDLE, 'utf8'), context);
  return new window.Crypto();
}

// fixed inputs: two key pairs (one with a leading zero byte), texts with unicode and block edges
const PRIV_A = Buffer.from('0f1e2d3c4b5a69788796a5b4c3d2e1f00112233445566778899aabbccddeeff0', 'hex').toString('base64');
const PRIV_B = Buffer.from('00a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f', 'hex').toString('base64');
const TEXTS = ['', 'a', '0123456789abcdef', '{"username":"_ADMIN","password":"happn","info":{"_browser":true}}', 'ünïcødé ✓ \u2028 😀'.repeat(5)];
const SECRETS = ['XyZ12_abc-def987', 'sécret ✓'];

/** What the browser side computes, as plain JSON (the same function runs in vm and Chromium). */
function vectors(c, input) {
  const out = { pub: {}, sign: [], ecies: [], aes: [], hashes: [], nonces: [] };
  for (const priv of [input.PRIV_A, input.PRIV_B]) {
    const wif = c.keyPairToWIF({ privateKey: priv });
    out.pub[priv] = { wif, fromWif: c.keyPairFromWIF(wif) };
  }
  const pubOf = (priv) => out.pub[priv].fromWif.publicKey;
  for (const nonce of input.nonces) {
    out.sign.push(c.sign(nonce, input.PRIV_A));
    out.sign.push(c.sign(nonce, input.PRIV_B));
  }
  for (const text of input.TEXTS) {
    out.ecies.push(JSON.parse(JSON.stringify(c.asymmetricEncrypt(pubOf(input.PRIV_B), input.PRIV_A, text))));
    for (const secret of input.SECRETS) {
      out.aes.push(c.symmetricEncrypt(text, secret));
      out.aes.push(c.symmetricEncryptObject({ text, n: 1 }, secret));
    }
    out.hashes.push(c.createHashFromString(text), c.createHashFromString(text, 'hex', 'md5'), c.createHashFromString(text, 'hex', 'sha512'), c.createHashFromString(text, 'base64', 'sha1'));
  }
  out.nonces.push(c.generateNonce('fixed'), c.generateNonce().length);
  out.opened = {
    ecies: input.sealed.map((s) => c.asymmetricDecrypt(pubOf(input.PRIV_A), input.PRIV_B, s).toString()),
    aes: input.ciphered.map((x) => c.symmetricDecrypt(x.hex, x.secret)),
    verified: input.signed.map((s) => c.verify(s.nonce, s.signature, s.publicKey)),
    forged: c.verify(input.signed[0].nonce, input.signed[1].signature, input.signed[0].publicKey),
  };
  out.valid = [
    c.validatePublicKey(pubOf(input.PRIV_A), 'base64'),
    c.validatePublicKey(pubOf(input.PRIV_A)),
    c.validatePublicKey('AAAA', 'base64'),
    c.validatePrivateKey(input.PRIV_A, 'base64'),
    c.validatePrivateKey(out.pub[input.PRIV_A].wif),
    c.validatePrivateKey('nonsense'),
  ];
  const kp = c.createKeyPair();
  out.createKeyPair = [kp.privateKey.length, kp.publicKey.length, c.validatePublicKey(kp.publicKey, 'base64')];
  return out;
}

/** The same vectors from the original, plus the inputs that need the other side's output. */
function expected() {
  const o = original();
  const bitcore = require(require.resolve('bitcore-lib', { paths: [COMPAT_MODULES] }));
  const nonces = [o.generateNonce(), o.generateNonce(), o.generateNonce('x')];
  const input = { PRIV_A, PRIV_B, TEXTS, SECRETS, nonces };
  const pub = (priv) => Buffer.from(new bitcore.PrivateKey(Buffer.from(priv, 'base64').toString('hex')).publicKey.toString(), 'hex').toString('base64');
  input.sealed = TEXTS.map((t) => JSON.parse(JSON.stringify(o.asymmetricEncrypt(pub(PRIV_B), PRIV_A, t))));
  input.ciphered = TEXTS.flatMap((t) => SECRETS.map((secret) => ({ hex: o.symmetricEncrypt(t, secret), secret })));
  input.signed = nonces.map((nonce) => ({ nonce, signature: o.sign(nonce, PRIV_A), publicKey: pub(PRIV_A) }));

  // the original computed the way our side does (its keyPairToWIF rejects base64 keys: bitcore directly)
  const out = { pub: {}, sign: [], ecies: [], aes: [], hashes: [], nonces: [] };
  for (const priv of [PRIV_A, PRIV_B]) {
    const wif = new bitcore.PrivateKey(Buffer.from(priv, 'base64').toString('hex')).toWIF();
    // bitcore drops a private key's leading zero bytes (31-byte keys, 1 in 256); ours keeps 32
    const fromWif = o.keyPairFromWIF(wif);
    const key = Buffer.from(fromWif.privateKey, 'base64');
    fromWif.privateKey = Buffer.concat([Buffer.alloc(32 - key.length), key]).toString('base64');
    out.pub[priv] = { wif, fromWif };
  }
  for (const nonce of nonces) out.sign.push(o.sign(nonce, PRIV_A), o.sign(nonce, PRIV_B));
  out.ecies = input.sealed;
  for (const text of TEXTS) {
    for (const secret of SECRETS) out.aes.push(o.symmetricEncrypt(text, secret), o.symmetricEncryptObject({ text, n: 1 }, secret));
    out.hashes.push(o.createHashFromString(text), o.createHashFromString(text, 'hex', 'md5'), o.createHashFromString(text, 'hex', 'sha512'), o.createHashFromString(text, 'base64', 'sha1'));
  }
  out.nonces.push(o.generateNonce('fixed'), o.generateNonce().length);
  out.opened = { ecies: TEXTS, aes: TEXTS.flatMap((t) => SECRETS.map(() => t)), verified: nonces.map(() => true), forged: false };
  out.valid = [true, false, false, true, true, false];
  out.createKeyPair = [44, 44, true];
  // and the original opens what our side sealed / verifies what it signed (checked by the callers)
  return { input, out, o, pub };
}

function crossCheck(ours, exp) {
  const { o, pub, input } = exp;
  TEXTS.forEach((text, i) => {
    assert.equal(o.asymmetricDecrypt(pub(PRIV_A), PRIV_B, Buffer.from(ours.ecies[i].data)).toString(), text);
  });
  input.nonces.forEach((nonce, i) => assert.equal(o.verify(nonce, ours.sign[2 * i], pub(PRIV_A)), true));
}

const silenceDeprecation = () => {
  const emit = process.emitWarning;
  process.emitWarning = () => {};
  return () => (process.emitWarning = emit);
};

test('the bundle (in a node vm) gives the original crypto\'s bytes', () => {
  const restore = silenceDeprecation();
  try {
    const exp = expected();
    // plain JSON: objects made in the vm have that realm's prototypes
    const ours = JSON.parse(JSON.stringify(vectors(bundled(), exp.input)));
    assert.deepEqual(ours, exp.out);
    crossCheck(ours, exp);
  } finally {
    restore();
  }
});

test('the served bundle in Chromium gives the original crypto\'s bytes', async () => {
  const srv = await startServer();
  const browser = await openBrowser();
  const restore = silenceDeprecation();
  try {
    const page = await browser.page(srv.url + '/index.html');
    await page.addScriptTag({ url: '/browser_crypto.js' });
    const exp = expected();
    const ours = await inPage(page, ([source, input]) => {
      const vectors = new Function('return (' + source + ')')();
      return vectors(new window.Crypto(), input);
    }, [vectors.toString(), exp.input]);
    assert.deepEqual(ours, exp.out);
    crossCheck(ours, exp);
    const dom = await inPage(page, () => ({ lower: typeof window.crypto.getRandomValues, upper: typeof window.Crypto.prototype.sign }));
    assert.deepEqual(dom, { lower: 'function', upper: 'function' }, 'window.Crypto replaced, window.crypto untouched');
  } finally {
    restore();
    await browser.close();
    await srv.stop();
  }
});
