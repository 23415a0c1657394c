// Builds src/main.jsx into ../static/example/react/ (git-ignored), where Django's staticfiles finds it.
// The names are fixed (react-chat.js, react-chat.css), so the template includes them with {% static %}
// and needs no manifest. `make frontend` runs this (npm ci, then npm run build) when a source is newer.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  // Asset URLs relative to the bundle, wherever STATIC_URL puts it.
  base: './',
  build: {
    outDir: fileURLToPath(new URL('../static/example/react', import.meta.url)),
    emptyOutDir: true,
    rollupOptions: {
      input: fileURLToPath(new URL('src/main.jsx', import.meta.url)),
      output: {
        entryFileNames: 'react-chat.js',
        chunkFileNames: '[name].js',
        assetFileNames: 'react-chat[extname]',
      },
    },
  },
});
