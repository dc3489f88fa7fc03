import { defineConfig } from "vite";

// The client library alone, for Node.js (and other bundlers): dist-lib/mchat-client.js, ESM,
// with `mqtt` left as an import (npm install mqtt beside it). No DOM, no UI.
export default defineConfig({
  build: {
    outDir: "dist-lib",
    emptyOutDir: true,
    target: "node18",
    minify: false,
    lib: {
      entry: { "mchat-client": "src/client/node.ts" },
      formats: ["es"],
    },
    rollupOptions: { external: ["mqtt", /^node:/] },
  },
});
