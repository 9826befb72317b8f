// /browser_primus.js: defines the `Primus` global (and, when require.js itself loads this file,
// answers its define() as Primus' own UMD build does).
/* global define */
import Primus from './primus.js';

const script = typeof document !== 'undefined' ? document.currentScript : null;
if (typeof window !== 'undefined') window.Primus = Primus;
if (typeof define === 'function' && define.amd && script && script.hasAttribute('data-requiremodule')) {
  define(() => Primus);
}
