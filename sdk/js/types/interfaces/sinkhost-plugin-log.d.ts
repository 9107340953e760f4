declare module 'sinkhost:plugin/log@0.1.0' {
  /**
   * Writes one line to the host's log.
   */
  export function log(level: Level, message: string): void;
  /**
   * How important a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * ## `"debug"`
   * 
   * ## `"info"`
   * 
   * ## `"warn"`
   * 
   * ## `"error"`
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
