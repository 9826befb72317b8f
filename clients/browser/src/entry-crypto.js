// /browser_crypto.js: defines `window.Crypto` (replacing the DOM's non-constructible `Crypto`
// interface, as the original does; `window.crypto` is untouched).
import Crypto from './crypto.js';

export {}; // an ES module: `module` below is the page's global (NW.js), not a bundler's shim

if (typeof window !== 'undefined') window.Crypto = Crypto;
// eslint-disable-next-line no-undef
if (typeof module !== 'undefined' && module) module.exports = Crypto;
