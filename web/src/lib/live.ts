// LiveFeed is the dashboard's one WebSocket to GET /api/gpu/ws: every
// event of the user's jobs, pushed by the server (no polling). When the
// connection drops it reconnects with ?since=<the last seq it saw>, so the
// server replays what was missed and nothing is seen twice.

import type { JobEvent } from './types'

export type LiveState = 'connecting' | 'live' | 'reconnecting' | 'offline'

export interface LiveOptions {
  /** url is the WebSocket's address without a query, e.g. ws://host/api/gpu/ws. */
  url: () => string
  token: () => string
  onState?: (s: LiveState) => void
  /** onRefused is told when a connection closed before it opened (e.g. an expired token). */
  onRefused?: () => void
  WebSocketImpl?: typeof WebSocket
  /** backoff is the wait before reconnect attempt n (0, 1, …), in ms. */
  backoff?: (n: number) => number
  schedule?: (f: () => void, ms: number) => unknown
  cancel?: (h: unknown) => void
}

export const defaultBackoff = (n: number): number => Math.min(500 * 2 ** n, 10_000)

export class LiveFeed {
  state: LiveState = 'offline'
  lastSeq = 0
  private ws?: WebSocket
  private listeners = new Set<(e: JobEvent) => void>()
  private attempt = 0
  private timer: unknown
  private stopped = true

  constructor(private opts: LiveOptions) {}

  /** on calls f with every event from now on; it returns the unsubscribe. */
  on(f: (e: JobEvent) => void): () => void {
    this.listeners.add(f)
    return () => this.listeners.delete(f)
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    this.connect()
  }

  stop(): void {
    this.stopped = true
    if (this.timer !== undefined) (this.opts.cancel ?? clearTimeout)(this.timer as number)
    this.timer = undefined
    const ws = this.ws
    this.ws = undefined
    ws?.close(1000)
    this.setState('offline')
  }

  /** reset forgets the position in the feed (another user signed in). */
  reset(): void {
    this.lastSeq = 0
  }

  private setState(s: LiveState): void {
    if (this.state === s) return
    this.state = s
    this.opts.onState?.(s)
  }

  private connect(): void {
    const WS = this.opts.WebSocketImpl ?? WebSocket
    const url = this.opts.url() + (this.lastSeq > 0 ? `?since=${this.lastSeq}` : '')
    this.setState(this.attempt === 0 && this.lastSeq === 0 ? 'connecting' : 'reconnecting')
    // The token travels as the subprotocol pair "bearer, <token>", not in
    // the URL, so that it stays out of logs.
    const ws = new WS(url, ['bearer', this.opts.token()])
    this.ws = ws
    let opened = false
    ws.onopen = () => {
      if (this.ws !== ws) return
      opened = true
      this.attempt = 0
      this.setState('live')
    }
    ws.onmessage = (m: MessageEvent) => {
      if (this.ws !== ws) return
      let e: JobEvent
      try {
        e = JSON.parse(String(m.data))
      } catch {
        return
      }
      if (typeof e.seq !== 'number') return // subscribed, pong, error
      if (e.seq <= this.lastSeq) return // already seen
      this.lastSeq = e.seq
      for (const f of this.listeners) f(e)
    }
    ws.onclose = () => {
      if (this.ws !== ws) return
      this.ws = undefined
      if (this.stopped) return
      if (!opened) this.opts.onRefused?.()
      if (this.stopped) return
      this.setState('reconnecting')
      const wait = (this.opts.backoff ?? defaultBackoff)(this.attempt++)
      this.timer = (this.opts.schedule ?? setTimeout)(() => {
        this.timer = undefined
        if (!this.stopped) this.connect()
      }, wait)
    }
  }
}
