/// <reference path="./sinkhost-plugin-types.d.ts" />
declare module 'sinkhost:plugin/sink@0.1.0' {
  /**
   * Configures this instance. Called once per instance, before its first
   * `deliver`, with JSON text (after `${VAR}` expansion) of the form
   * `{"subscription": "<name>", "webhook": {"url": "...", "headers": {...}}, "settings": {...}}`.
   * An error is a configuration error: `sinkhost check` reports it and the
   * host does not start the subscription.
   */
  export function init(config: string): void;
  /**
   * Delivers one message and says what became of it.
   */
  export function deliver(msg: Message): Outcome;
  export type Message = import('sinkhost:plugin/types@0.1.0').Message;
  export type Outcome = import('sinkhost:plugin/types@0.1.0').Outcome;
}
