// The real transport: MQTT.js 5 over WebSockets (browser) or ws/tcp URLs (Node.js).
// MQTT.js's own reconnect is off: the client reconnects itself, with a fresh credential.
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import { ConnectRefused, type Transport, type TransportFactory, type TransportOptions } from "./transport";

const UNAUTHORIZED_CODES = new Set([4, 5, 134, 135]);

export const mqttTransport: TransportFactory = (o: TransportOptions) =>
  new Promise<Transport>((resolve, reject) => {
    const options: IClientOptions = {
      clientId: o.clientId,
      username: o.username,
      password: o.password,
      protocolVersion: o.protocolVersion,
      clean: true,
      reconnectPeriod: 0,
      connectTimeout: o.connectTimeoutMs,
      keepalive: o.keepaliveSeconds,
      resubscribe: false,
      // Native timers: the default "worker" timers start a Worker from a blob: URL, which the CSP forbids.
      timerVariant: "native",
    };
    if (o.will) options.will = { ...o.will };
    const client: MqttClient = mqtt.connect(o.url, options);
    let settled = false;
    let ended = false;
    let closeHandler: ((reason: string) => void) | null = null;
    let lastError = "";

    client.on("error", (err: Error & { code?: number }) => {
      lastError = err.message;
      if (!settled) {
        settled = true;
        client.end(true);
        reject(new ConnectRefused(err.message, err.code !== undefined && UNAUTHORIZED_CODES.has(err.code)));
      }
    });
    client.on("close", () => {
      if (!settled) {
        settled = true;
        reject(new ConnectRefused(lastError || "连接被关闭", false));
        return;
      }
      if (!ended && closeHandler) {
        ended = true;
        closeHandler(lastError || "connection closed");
      }
    });
    client.on("connect", () => {
      if (settled) return;
      settled = true;
      resolve(transport);
    });

    const transport: Transport = {
      subscribe: (topics) =>
        new Promise((res, rej) => {
          if (topics.length === 0) return res();
          client.subscribe(topics, { qos: 1 }, (err) => (err ? rej(err) : res()));
        }),
      unsubscribe: (topics) =>
        new Promise((res, rej) => {
          if (topics.length === 0) return res();
          client.unsubscribe(topics, (err) => (err ? rej(err) : res()));
        }),
      publish: (topic, payload, opts) =>
        new Promise((res, rej) => {
          client.publish(topic, payload, { qos: opts.qos, retain: opts.retain ?? false }, (err) =>
            err ? rej(err) : res(),
          );
        }),
      end: () =>
        new Promise((res) => {
          ended = true;
          client.end(false, {}, () => res());
        }),
      onMessage: (handler) => {
        client.on("message", (topic, payload) => handler(topic, payload.toString()));
      },
      onClose: (handler) => {
        closeHandler = handler;
      },
    };
  });
