declare module 'sinkhost:plugin/types@0.1.0' {
  /**
   * One JetStream message, as the host hands it to `sink.deliver`.
   */
  export interface Message {
    /**
     * The NATS subject the producer published to, e.g. `order.completed`.
     */
    subject: string,
    /**
     * The message body, byte for byte as published.
     */
    payload: Uint8Array,
    /**
     * The NATS headers of the message, in order; a name may repeat.
     */
    headers: Array<[string, string]>,
    /**
     * A stable id for this stream message: the producer's `Nats-Msg-Id`
     * when set, else `nats-msg-<stream sequence>`. The same on every
     * redelivery, so destinations can drop duplicates with it.
     */
    id: string,
    /**
     * When JetStream stored the message, in milliseconds since the Unix epoch.
     */
    publishedMs: bigint,
    /**
     * Which delivery attempt this is: 1 on the first delivery.
     */
    attempt: number,
    /**
     * The last attempt the host makes before the message is dead-lettered.
     */
    maxAttempts: number,
  }
  /**
   * What a plugin decides about one message.
   */
  export type Outcome = OutcomeDelivered | OutcomeRetry | OutcomeReject;
  /**
   * The destination accepted the message: the host acks it.
   */
  export interface OutcomeDelivered {
    tag: 'delivered',
  }
  /**
   * Try again later. `some(ms)` asks for that delay (e.g. from a
   * `Retry-After` header); `none` uses the subscription's backoff schedule.
   * After the last attempt the message is dead-lettered.
   */
  export interface OutcomeRetry {
    tag: 'retry',
    val: bigint | undefined,
  }
  /**
   * The message can never be delivered (e.g. the destination answered
   * 422): the host dead-letters it now with this reason, without retrying.
   */
  export interface OutcomeReject {
    tag: 'reject',
    val: string,
  }
}
