// Builds the three browser bundles the server embeds (crates/server/src/http/browser.rs):
//   node build.mjs [outdir]      (default: dist/, which is committed)
// Output is deterministic for a given esbuild and @noble versions (package-lock.json), so a
// test rebuilds into a temporary folder and compares byte for byte with dist/.
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = path.resolve(process.argv[2] || path.join(here, 'dist'));

const bundles = [
  {
    entry: 'src/client.js',
    out: 'browser_client.js',
    // the two lines the original's /browser_client starts with (tools read the versions there)
    banner: '//happn client v2.21.0\r\n//protocol v1.1.0\r\n// happn-rs browser client (clients/browser)',
  },
  { entry: 'src/entry-primus.js', out: 'browser_primus.js', banner: '// happn-rs Primus client (clients/browser), speaks Primus 6.0.1' },
  { entry: 'src/entry-crypto.js', out: 'browser_crypto.js', banner: '// happn-rs browser crypto (clients/browser), on @noble/secp256k1, @noble/hashes, @noble/ciphers' },
];

for (const b of bundles) {
  await build({
    absWorkingDir: here,
    entryPoints: [b.entry],
    outfile: path.join(outdir, b.out),
    bundle: true,
    minify: true,
    format: 'iife',
    // es2022 keeps the @noble classes' fields as written (es2020 rewrites each into a
    // constructor assignment: 0.8 KB more); every browser with BigInt and WebSocket since 2021 has them
    target: 'es2022',
    charset: 'utf8',
    legalComments: 'eof',
    banner: { js: b.banner },
    logLevel: 'warning',
    logOverride: { 'commonjs-variable-in-esm': 'silent' },
  });
}
