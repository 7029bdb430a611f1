import { defineConfig } from "vitest/config";

// Tauri loads ui/dist in production and this dev server (devUrl) in `tauri dev`.
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // WebKitGTK (Linux) and WKWebView (macOS) are the oldest engines we run in.
    target: ["es2021", "safari15"],
  },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts"],
  },
});
