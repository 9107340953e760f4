declare module 'sinkhost:plugin/http@0.1.0' {
  /**
   * Sends `req` and waits for the response.
   */
  export function send(req: Request): Response;
  /**
   * An HTTP method.
   */
  export type Method = MethodGet | MethodHead | MethodPost | MethodPut | MethodPatch | MethodDelete | MethodOptions | MethodOther;
  export interface MethodGet {
    tag: 'get',
  }
  export interface MethodHead {
    tag: 'head',
  }
  export interface MethodPost {
    tag: 'post',
  }
  export interface MethodPut {
    tag: 'put',
  }
  export interface MethodPatch {
    tag: 'patch',
  }
  export interface MethodDelete {
    tag: 'delete',
  }
  export interface MethodOptions {
    tag: 'options',
  }
  /**
   * Any other method, by name.
   */
  export interface MethodOther {
    tag: 'other',
    val: string,
  }
  /**
   * A request for the host to send.
   */
  export interface Request {
    /**
     * The method to use.
     */
    method: Method,
    /**
     * The absolute `http://` or `https://` URL.
     */
    url: string,
    /**
     * Request headers, in order; a name may repeat.
     */
    headers: Array<[string, string]>,
    /**
     * The request body; empty for none.
     */
    body: Uint8Array,
  }
  /**
   * The destination's answer. Any status is a response, 4xx and 5xx included:
   * the plugin decides what they mean.
   */
  export interface Response {
    /**
     * The HTTP status code.
     */
    status: number,
    /**
     * Response headers, in order, names in lower case.
     */
    headers: Array<[string, string]>,
    /**
     * The response body, cut off after the host's read limit (1 MiB).
     */
    body: Uint8Array,
  }
  /**
   * Why no response arrived. Typed so a plugin can tell retryable failures
   * from permanent ones without parsing text.
   */
  export type HttpError = HttpErrorTimeout | HttpErrorConnect | HttpErrorDenied | HttpErrorOther;
  /**
   * No complete response within the subscription's `timeout`.
   */
  export interface HttpErrorTimeout {
    tag: 'timeout',
  }
  /**
   * The connection could not be made or broke: DNS, refused, reset, TLS.
   */
  export interface HttpErrorConnect {
    tag: 'connect',
    val: string,
  }
  /**
   * The host refused to send: the URL's host is not allowed for this
   * subscription, or the URL is not http(s). Retrying will not help.
   */
  export interface HttpErrorDenied {
    tag: 'denied',
    val: string,
  }
  /**
   * Anything else, e.g. an invalid header or method.
   */
  export interface HttpErrorOther {
    tag: 'other',
    val: string,
  }
}
