import { defineConfig } from "vitest/config";

// The built client is served by Django at /static/web/ (WEB-CONTRACT.md); the page shell is
// dist/index.html, which Django returns for /, /c/... for a signed-in employee.
export default defineConfig({
  base: "/static/web/",
  esbuild: { jsx: "automatic", jsxImportSource: "preact" },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2020",
    // No inline scripts (the page's CSP forbids them): the preload polyfill would be one.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    reportCompressedSize: true,
  },
  test: {
    include: ["test/**/*.test.ts"],
    environment: "node",
  },
});
