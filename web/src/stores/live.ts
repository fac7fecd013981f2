import { defineStore } from 'pinia'
import { ref } from 'vue'
import { getToken, request } from '../lib/api'
import { LiveFeed, type LiveState } from '../lib/live'
import type { JobEvent } from '../lib/types'

export const useLive = defineStore('live', () => {
  const state = ref<LiveState>('offline')
  const feed = new LiveFeed({
    url: () => `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api/gpu/ws`,
    token: getToken,
    onState: (s) => (state.value = s),
    // A refused upgrade is most often an expired token: asking who we are
    // signs out on a 401 (the API client's handler).
    onRefused: () => void request('/users/me').catch(() => undefined),
  })

  function start(): void {
    feed.start()
  }
  function stop(): void {
    feed.stop()
    feed.reset()
  }
  function on(f: (e: JobEvent) => void): () => void {
    return feed.on(f)
  }
  return { state, start, stop, on }
})
