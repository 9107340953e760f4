// Import first, then `await import('../sinkhost.js')`: from then on the WIT
// imports resolve to the fake host in host.js (static imports of the same
// module are resolved before this runs, hence the dynamic import).
import { register } from 'node:module';

register('./hooks.js', import.meta.url);
