// The entry point for Node.js and bundlers: the library plus the MQTT.js transport.
export * from "./index";
export { mqttTransport } from "./mqttTransport";
