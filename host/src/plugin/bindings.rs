//! The host's bindings of the WIT world `sinkhost:plugin/sink-plugin`,
//! generated once here; `http.send` is async (it waits on the network).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "sink-plugin",
    imports: { "sinkhost:plugin/http.send": async },
    exports: { default: async },
});
