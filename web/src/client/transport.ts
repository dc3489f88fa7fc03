// The MQTT connection under the client, behind a small interface so that the client can be
// tested against a fake broker and used from Node.js as from the browser.

export interface Will {
  topic: string;
  payload: string;
  qos: 0 | 1;
  retain: boolean;
}

export interface TransportOptions {
  url: string;
  clientId: string;
  username: string;
  password: string;
  protocolVersion: 4 | 5;
  keepaliveSeconds: number;
  connectTimeoutMs: number;
  will?: Will;
}

export interface Transport {
  subscribe(topics: string[]): Promise<void>;
  unsubscribe(topics: string[]): Promise<void>;
  publish(topic: string, payload: string, options: { qos: 0 | 1; retain?: boolean }): Promise<void>;
  /** Close the connection; `onClose` is not called for a close asked for here. */
  end(): Promise<void>;
  onMessage(handler: (topic: string, payload: string) => void): void;
  onClose(handler: (reason: string) => void): void;
}

/** Refused by the broker for its credentials (MQTT 5 reason 134/135, 3.1.1 return code 4/5). */
export class ConnectRefused extends Error {
  constructor(
    message: string,
    readonly unauthorized: boolean,
  ) {
    super(message);
    this.name = "ConnectRefused";
  }
}

/** Opens one connection; resolves once the broker accepted it (CONNACK success). */
export type TransportFactory = (options: TransportOptions) => Promise<Transport>;
