// The MChat client library: no UI, no DOM; usable from the browser and from Node.js.
export * from "./types";
export * from "./errors";
export * from "./deliveries";
export { MChatClient, newSeqId, type ClientEvent, type ClientEventKind, type ClientOptions, type RequestOptions } from "./client";
export { CredentialError, cookieValue, webCredentialProvider, type WebCredentialOptions } from "./credential";
export { ConnectRefused, type Transport, type TransportFactory, type TransportOptions, type Will } from "./transport";
export { Sequencer } from "./sequencer";
export { StreamTracker, type StreamTrackerHooks } from "./streams";
export { contentSummary, safeHttpUrl } from "./content";
