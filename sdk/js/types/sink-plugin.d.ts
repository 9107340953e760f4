/// <reference path="./interfaces/sinkhost-plugin-http.d.ts" />
/// <reference path="./interfaces/sinkhost-plugin-log.d.ts" />
/// <reference path="./interfaces/sinkhost-plugin-sink.d.ts" />
/// <reference path="./interfaces/sinkhost-plugin-types.d.ts" />
declare module 'sinkhost:plugin/sink-plugin@0.1.0' {
  export type * as SinkhostPluginHttp010 from 'sinkhost:plugin/http@0.1.0'; // import sinkhost:plugin/http@0.1.0
  export type * as SinkhostPluginLog010 from 'sinkhost:plugin/log@0.1.0'; // import sinkhost:plugin/log@0.1.0
  export type * as SinkhostPluginTypes010 from 'sinkhost:plugin/types@0.1.0'; // import sinkhost:plugin/types@0.1.0
  export * as sink from 'sinkhost:plugin/sink@0.1.0'; // export sinkhost:plugin/sink@0.1.0
}
