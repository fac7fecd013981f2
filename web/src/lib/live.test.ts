import { describe, expect, it } from 'vitest'
import { LiveFeed, type LiveState } from './live'
import type { JobEvent } from './types'

// FakeSocket stands in for the browser's WebSocket: the test opens,
// delivers and drops connections by hand.
class FakeSocket {
  static all: FakeSocket[] = []
  onopen: (() => void) | null = null
  onmessage: ((m: { data: string }) => void) | null = null
  onclose: (() => void) | null = null
  closed = false
  constructor(
    public url: string,
    public protocols: string[],
  ) {
    FakeSocket.all.push(this)
  }
  close(): void {
    this.closed = true
  }
  open(): void {
    this.onopen?.()
  }
  send(msg: object): void {
    this.onmessage?.({ data: JSON.stringify(msg) })
  }
  drop(): void {
    this.onclose?.()
  }
}

function setup() {
  FakeSocket.all = []
  const states: LiveState[] = []
  const timers: (() => void)[] = []
  let refused = 0
  const feed = new LiveFeed({
    url: () => 'ws://host/api/gpu/ws',
    token: () => 'tok',
    onState: (s) => states.push(s),
    onRefused: () => refused++,
    WebSocketImpl: FakeSocket as unknown as typeof WebSocket,
    schedule: (f) => timers.push(f),
    cancel: () => undefined,
  })
  const got: JobEvent[] = []
  feed.on((e) => got.push(e))
  return { feed, states, timers, got, refused: () => refused }
}

const ev = (seq: number, status = 'running'): object => ({
  type: 'job.status',
  seq,
  task_id: 't1',
  status,
  at: '2026-01-01T00:00:00Z',
})

describe('LiveFeed', () => {
  it('sends the token as a subprotocol, not in the URL', () => {
    const { feed } = setup()
    feed.start()
    expect(FakeSocket.all[0].url).toBe('ws://host/api/gpu/ws')
    expect(FakeSocket.all[0].protocols).toEqual(['bearer', 'tok'])
  })

  it('reconnects with since=<last seq> after a drop, and shows reconnecting meanwhile', () => {
    const { feed, states, timers, got } = setup()
    feed.start()
    const first = FakeSocket.all[0]
    first.open()
    first.send(ev(41))
    first.send({ type: 'pong' })
    first.send(ev(42))
    expect(states.at(-1)).toBe('live')
    first.drop()
    expect(states.at(-1)).toBe('reconnecting')
    expect(timers).toHaveLength(1)
    timers[0]()
    const second = FakeSocket.all[1]
    expect(second.url).toBe('ws://host/api/gpu/ws?since=42')
    second.open()
    expect(states.at(-1)).toBe('live')
    // The replay may overlap what was seen: nothing is delivered twice.
    second.send(ev(42))
    second.send(ev(43, 'succeeded'))
    expect(got.map((e) => e.seq)).toEqual([41, 42, 43])
  })

  it('tells when a connection is refused before it opens, and keeps trying', () => {
    const { feed, timers, refused } = setup()
    feed.start()
    FakeSocket.all[0].drop()
    expect(refused()).toBe(1)
    timers[0]()
    expect(FakeSocket.all).toHaveLength(2)
  })

  it('stops for good on stop, and starts from the present after reset', () => {
    const { feed, states, timers } = setup()
    feed.start()
    FakeSocket.all[0].open()
    FakeSocket.all[0].send(ev(7))
    feed.stop()
    expect(FakeSocket.all[0].closed).toBe(true)
    FakeSocket.all[0].drop()
    expect(timers).toHaveLength(0)
    expect(states.at(-1)).toBe('offline')
    feed.reset()
    feed.start()
    expect(FakeSocket.all[1].url).toBe('ws://host/api/gpu/ws')
  })
})
