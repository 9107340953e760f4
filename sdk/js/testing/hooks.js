// Node module hooks (registered by register.js): the WIT imports resolve to host.js.
const HOST = new URL('./host.js', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if (specifier.startsWith('sinkhost:plugin/')) return { url: HOST, shortCircuit: true };
  return next(specifier, context);
}
