import { defineConfig } from 'vitest/config'
import vue from '@vitejs/plugin-vue'

// The dashboard is served by the API under /ui/ and embedded in the Go
// binary (web.go). The build is reproducible: the same sources and lock
// give the same dist/ byte for byte (file names carry content hashes,
// nothing carries a time), which scripts/check-dist.sh checks.
const api = process.env.GPUFLOW_API ?? 'http://127.0.0.1:8080'

export default defineConfig({
  base: '/ui/',
  plugins: [vue()],
  define: {
    __VUE_OPTIONS_API__: 'false',
    __VUE_PROD_DEVTOOLS__: 'false',
    __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
    __VUE_I18N_FULL_INSTALL__: 'false',
    __VUE_I18N_LEGACY_API__: 'false',
    __INTLIFY_PROD_DEVTOOLS__: 'false',
    __INTLIFY_DROP_MESSAGE_COMPILER__: 'false',
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1500,
    rollupOptions: {
      output: {
        // Two long-lived vendor chunks beside the app's own code.
        manualChunks(id: string) {
          if (id.includes('node_modules/echarts') || id.includes('node_modules/zrender')) return 'charts'
          if (id.includes('node_modules/')) return 'vendor'
          return undefined
        },
      },
    },
  },
  server: {
    // `npm run dev` against a running `make run`.
    proxy: {
      '/api': { target: api, ws: true },
      '/auth': api,
      '/users': api,
    },
  },
  test: {
    environment: 'happy-dom',
    include: ['src/**/*.test.ts'],
  },
})
