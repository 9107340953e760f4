// A JavaScript plugin whose exceptions escape on purpose, chosen by
// `settings.throw_in`. The tests use it to prove that what the JS runtime
// prints when it dies (the error's message and stack) reaches the host's log,
// and that a guest's stdout and stderr do too.
//
// | `settings`                | what it does |
// |---------------------------|--------------|
// | `{"throw_in": "init"}`    | `init` throws `new Error('js-throws: boom in init')` (a trap, not an init error: only a thrown string is one) |
// | `{"throw_in": "init-string"}` | `init` throws the string `'js-throws: bad settings in init'`: the init error |
// | `{"throw_in": "deliver"}` | `deliver` prints one line to stdout and one to stderr, then throws `new Error('js-throws: boom in deliver')` from a nested function (two frames) |
// | `{}`                      | `deliver` prints the same two lines and returns delivered, sending nothing |
//
// Build: `make examples` (target/release/test-plugins/js-throws.wasm), with
// examples/js-teams' componentize-js.

let throwIn = null;

export const sink = {
  init(text) {
    throwIn = JSON.parse(text).settings?.throw_in ?? null;
    if (throwIn === 'init') throw new Error('js-throws: boom in init');
    if (throwIn === 'init-string') throw 'js-throws: bad settings in init';
  },

  deliver(msg) {
    console.log('js-throws: stdout line');
    console.error('js-throws: stderr line');
    if (throwIn === 'deliver') explode();
    return { tag: 'delivered' };
  },
};

function explode() {
  throw new Error('js-throws: boom in deliver');
}
