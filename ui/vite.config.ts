import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  plugins: [svelte()],
  // Tauri serves the built files; keep the dev server off other projects' ports and
  // never watch Rust build output.
  server: { port: 1420, strictPort: true, watch: { ignored: ['**/target/**', '**/src-tauri/**'] } },
  build: { target: 'es2022', outDir: 'dist', emptyOutDir: true },
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
